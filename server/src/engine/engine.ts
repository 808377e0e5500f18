import {
  getLlama,
  InsufficientMemoryError,
  LlamaChat,
  LlamaLogLevel,
  resolveChatWrapper,
  type ChatWrapper,
  type GbnfJsonSchema,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaEmbeddingContext,
  type LlamaGrammar,
  type LlamaModel,
  type Token,
} from 'node-llama-cpp';
import type { Config } from '../config.js';
import type { Logger } from '../logging/logger.js';
import { openSequences, type EngineSequence } from './contexts.js';
import { attachThreadpool, threadpoolUnavailable } from './threadpool.js';
import { autoFunctions, renderChat, toChatHistory } from './chat.js';
import { complete, promptTokens } from './completion.js';
import type { DecodeLoop } from './decode-loop.js';
import { GrammarCache } from './grammar-cache.js';
import type { ModelCatalog } from './model-catalog.js';
import { QueueFullError, SequencePool } from './sequence-pool.js';

export type FinishReason = 'stop' | 'length' | 'cancelled';

/** A call of a function the model made, as it appears in a later request's history. */
export interface ToolCallRecord {
  id: string;
  name: string;
  arguments: unknown;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
  /** An assistant turn's calls; their results follow as `tool` messages. */
  toolCalls?: ToolCallRecord[];
  /** A `tool` message: the call whose result `content` is. */
  toolCallId?: string;
}

/** A function the model may call: its JSON-schema parameters already checked by `toGrammarSchema`. */
export interface FunctionSpec {
  description?: string;
  params?: GbnfJsonSchema;
}

export interface FunctionsOption {
  available: Record<string, FunctionSpec>;
  /**
   * `auto`: the chat template describes the functions and the model decides whether to call
   * (node-llama-cpp's function calling; the parameters are grammar-enforced once a call starts).
   * `describe`: the functions are only described in the prompt (a forced call is generated
   * through `jsonSchema` instead).
   */
  mode: 'auto' | 'describe';
  /** With `auto`: the most calls in one answer. */
  maxParallel?: number;
}

export interface GenerationRequest {
  model: string;
  prompt?: string;
  messages?: ChatMessage[];
  maxTokens: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  stop?: string[];
  seed?: number;
  /** The output must be JSON valid against this schema (enforced by a grammar). */
  jsonSchema?: GbnfJsonSchema;
  /** Functions for the model (chat only). */
  functions?: FunctionsOption;
}

export interface GenerationResult {
  text: string;
  finishReason: FinishReason;
  /** With `functions` in `auto` mode: the calls the model made (then `text` is what came before). */
  functionCalls?: { name: string; arguments: unknown }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  timings: { queued_ms: number; prompt_ms: number; generation_ms: number; total_ms: number; tokens_per_second: number };
}

export interface GenerationHooks {
  signal?: AbortSignal;
  onText?: (text: string) => void;
}

/** A sequence held for one request; `release` must be called whatever happens. */
export interface Reservation {
  waitedMs: number;
  generate(request: GenerationRequest, hooks?: GenerationHooks): Promise<GenerationResult>;
  release(): void;
}

/** The prompt alone fills the sequence's context: nothing could be generated. */
export class PromptTooLongError extends Error {
  override name = 'PromptTooLongError';
  constructor(
    readonly promptTokens: number,
    readonly contextSize: number,
    /** For embeddings: which input (of the request's list) is too long. */
    readonly inputIndex?: number,
  ) {
    super(
      inputIndex === undefined
        ? `The prompt is ${promptTokens} tokens long; the context of a sequence holds ${contextSize}`
        : `The input is ${promptTokens} tokens long; the embedding context holds fewer than ${contextSize}`,
    );
  }
}

/**
 * The model was unloaded (or deleted) while a request waited for it or generated on it: worth a
 * retry. `partial`: what a generation had made when it was cut short (see `partialOf`).
 */
export class ModelUnloadedError extends Error {
  override name = 'ModelUnloadedError';
  constructor(
    message: string,
    readonly partial?: GenerationResult,
  ) {
    super(message);
  }
}

/** The server is shutting down and ended the generation (its grace period ran out): worth a retry elsewhere. */
export class ShuttingDownError extends Error {
  override name = 'ShuttingDownError';
  constructor(readonly partial?: GenerationResult) {
    super('The server is shutting down; retry in a moment');
  }
}

/**
 * What a generation had made when an unload or the shutdown cut it short (the error it failed
 * with): its tokens were spent, and a stream had already sent them, so they are its caller's usage.
 */
export function partialOf(error: unknown): GenerationResult | undefined {
  return error instanceof ModelUnloadedError || error instanceof ShuttingDownError ? error.partial : undefined;
}

/** The reason an unload or the shutdown gave, as this generation's own error, carrying what it made. */
function cutShort(reason: unknown, partial: GenerationResult): unknown {
  if (reason instanceof ModelUnloadedError) return new ModelUnloadedError(reason.message, partial);
  if (reason instanceof ShuttingDownError) return new ShuttingDownError(partial);
  return reason;
}

/** The request's grammar could not be compiled (a schema too complex for llama.cpp's parser). */
export { GrammarCompileError } from './grammar-cache.js';

export class ModelNotFoundError extends Error {
  override name = 'ModelNotFoundError';
}

/** The model's file failed validation, or llama.cpp could not load it: no retry helps until it is replaced. */
export class ModelUnusableError extends Error {
  override name = 'ModelUnusableError';
  constructor(
    readonly model: string,
    readonly reason: string,
  ) {
    super(`The model ${model} cannot be used: ${reason}`);
  }
}

/** What the engine reports as it works (the metrics); every method optional. */
export interface EngineObserver {
  modelLoaded?(model: string, seconds: number): void;
  modelLoadFailed?(model: string): void;
  /** A generation got its sequence after waiting this long in the model's queue. */
  queueWaited?(model: string, seconds: number): void;
}

interface LoadedModel {
  id: string;
  model: LlamaModel;
  contexts: LlamaContext[];
  pool: SequencePool<EngineSequence>;
  embedding?: Promise<LlamaEmbeddingContext>;
  embeddingBusy: Promise<unknown>;
  /** Embedding requests queued behind the one running (bounded by `[engine] max_queue`). */
  embeddingWaiting: number;
  /** Resolved from the model's chat template on first chat use (costs about a second), then kept. */
  chatWrapper?: ChatWrapper;
  lastUsed: number;
  /** Requests holding the model (pinned): LRU never unloads it, and `unload` waits for them. */
  active: number;
  /** Aborted when the model is unloaded: generations on it stop. */
  unloading: AbortController;
  /** Called when `active` drops to 0 while an unload waits. */
  drained?: () => void;
}

/**
 * The llama.cpp engine: one `Llama` per process; per loaded model `[engine] parallel` sequences
 * (in contexts of `sequences_per_context`) lent to requests through a bounded queue. Models load
 * on first use, one load at a time; beyond `[models] max_loaded` the least recently used idle one
 * is unloaded.
 */
export class InferenceEngine {
  #llama?: Llama;
  #starting?: Promise<Llama>;
  readonly #loaded = new Map<string, LoadedModel>();
  /** Contexts with work, of every loaded model: they share the cores (threadpool.ts ThreadShare). */
  readonly #busyContexts = new Set<object>();
  readonly #loading = new Map<string, Promise<LoadedModel>>();
  /** Loads run one at a time, so that `[models] max_loaded` holds however many start together. */
  #loadQueue: Promise<unknown> = Promise.resolve();
  readonly #grammars = new GrammarCache();

  constructor(
    private readonly config: Config,
    private readonly catalog: ModelCatalog,
    private readonly logger: Logger,
    private readonly observer: EngineObserver = {},
  ) {}

  get ready(): boolean {
    return this.#llama !== undefined;
  }

  /** Loads the llama.cpp binding (CPU build, never compiled or downloaded at run time). */
  start(): Promise<Llama> {
    this.#starting ??= getLlama({
      gpu: false,
      build: 'never',
      progressLogs: false,
      logLevel: LlamaLogLevel.warn,
      logger: (level, message) => {
        const text = message.trim();
        if (text) this.logger.debug({ llama_level: level }, text);
      },
    }).then((llama) => {
      this.#llama = llama;
      this.logger.info({ threads: this.config.engine.threads, parallel: this.config.engine.parallel }, 'llama.cpp engine ready');
      return llama;
    });
    return this.#starting;
  }

  isLoaded(id: string): boolean {
    return this.#loaded.has(id);
  }

  loadedIds(): string[] {
    return [...this.#loaded.keys()];
  }

  /** Loads a model (if not already), unloading the least recently used idle ones beyond the limit. */
  async load(id: string): Promise<LoadedModel> {
    const loaded = this.#loaded.get(id);
    if (loaded) {
      loaded.lastUsed = Date.now();
      return loaded;
    }
    let loading = this.#loading.get(id);
    if (!loading) {
      loading = this.#loadQueue.then(() => this.#loaded.get(id) ?? this.#load(id)).finally(() => this.#loading.delete(id));
      this.#loadQueue = loading.catch(() => undefined);
      this.#loading.set(id, loading);
    }
    return loading;
  }

  /** Loads the model if needed and pins it for one request; `#unpin` must follow. */
  async #pin(id: string): Promise<LoadedModel> {
    for (;;) {
      const entry = await this.load(id);
      // Between the load and here an unload may have run: pin only what is still loaded.
      if (this.#loaded.get(id) === entry) {
        entry.active++;
        entry.lastUsed = Date.now();
        return entry;
      }
    }
  }

  #unpin(entry: LoadedModel): void {
    entry.active--;
    if (entry.active === 0) entry.drained?.();
  }

  async #load(id: string): Promise<LoadedModel> {
    const info = await this.catalog.get(id);
    if (!info) throw new ModelNotFoundError(`No model with id ${id}`);
    if (info.state === 'invalid') {
      // Refused before llama.cpp sees it: still a load that failed, for the operator's metrics.
      this.observer.modelLoadFailed?.(id);
      throw new ModelUnusableError(id, info.invalid_reason ?? 'the file is invalid');
    }
    const llama = await this.start();
    await this.#makeRoom();
    const started = Date.now();
    const { engine } = this.config;
    let model: LlamaModel;
    try {
      model = await llama.loadModel({ modelPath: this.catalog.pathOf(id) });
    } catch (error) {
      this.observer.modelLoadFailed?.(id);
      throw this.#loadFailure(id, error);
    }
    let contexts: LlamaContext[] = [];
    try {
      // Contexts of `sequences_per_context` sequences each, sharing the model's weights. Each decode
      // step of a context batches the next token of every sequence generating on it, chat or plain
      // prompt (decode-loop.ts); a deterministic request's prompt decodes alone, and its next tokens
      // batch where the context's check finds the numbers unchanged (`isolate_deterministic`). One
      // context of 4 is the default: through the server on 2 cores (a Xeon) it streamed 4 greedy
      // streams at 1.5x (small q8_0) and 1.8x (small f16) the tokens/s of 4 one-sequence contexts,
      // one stream the same (0.95-1.08x); the tiny model's 4 at 0.7x (its decode too short to split
      // over threads: 4 contexts run 2 at a time on the 2 cores, one context 4 tokens a step on one).
      // On an AMD EPYC, 4 contexts had streamed 4 at 1.0-1.3x one context with greedy streams batched.
      const opened = await openSequences(model, engine, { busy: this.#busyContexts });
      contexts = opened.contexts;
      const sequences = opened.sequences;
      const entry: LoadedModel = {
        id,
        model,
        contexts,
        pool: new SequencePool(sequences, () => this.config.engine.max_queue),
        embeddingBusy: Promise.resolve(),
        embeddingWaiting: 0,
        lastUsed: Date.now(),
        active: 0,
        unloading: new AbortController(),
      };
      this.#loaded.set(id, entry);
      this.logger.info({ model: id, load_ms: Date.now() - started, sequences: sequences.length, contexts: contexts.length, threadpools: opened.threadpools, native_steps: sequences.some((item) => item.loop.native), ...sharedChecks(sequences) }, 'model loaded');
      if (engine.threads > 1 && !opened.threadpools) this.logger.warn({ reason: threadpoolUnavailable() }, 'contexts run without a persistent threadpool: the engine threads are split among them, at least one each');
      this.observer.modelLoaded?.(id, (Date.now() - started) / 1000);
      return entry;
    } catch (error) {
      this.observer.modelLoadFailed?.(id);
      for (const context of contexts) await context.dispose();
      await model.dispose();
      throw this.#loadFailure(id, error);
    }
  }

  /** Memory is a capacity problem (503, retry later); any other failure of llama.cpp's is the file's (409). */
  #loadFailure(id: string, error: unknown): Error {
    if (error instanceof InsufficientMemoryError) return error;
    // llama.cpp's message may name the file's path: it goes to the log, not to the client.
    this.logger.warn({ model: id, err: error }, 'llama.cpp could not load the model; it is listed as invalid until the file changes');
    const reason = 'llama.cpp could not load the file (the server log has its message)';
    this.catalog.markInvalid(id, reason);
    return new ModelUnusableError(id, reason);
  }

  async #makeRoom(): Promise<void> {
    while (this.#loaded.size >= this.config.models.max_loaded) {
      const idle = [...this.#loaded.values()].filter((m) => m.active === 0).sort((a, b) => a.lastUsed - b.lastUsed)[0];
      if (!idle) return; // every loaded model is busy: go over the limit rather than fail the request
      await this.unload(idle.id);
    }
  }

  /**
   * Unloads a model: requests waiting for it get ModelUnloadedError (503), generations on it are
   * stopped, and its memory is freed once the last of them has let go.
   */
  async unload(id: string): Promise<boolean> {
    await this.#loading.get(id)?.catch(() => undefined);
    const entry = this.#loaded.get(id);
    if (!entry) return false;
    this.#loaded.delete(id);
    const reason = new ModelUnloadedError(`Model ${id} was unloaded; try again`);
    entry.pool.rejectWaiting(reason);
    entry.unloading.abort(reason);
    if (entry.active > 0) await new Promise<void>((resolve) => (entry.drained = resolve));
    if (entry.embedding) await (await entry.embedding.catch(() => undefined))?.dispose();
    for (const context of entry.contexts) await context.dispose();
    await entry.model.dispose();
    this.logger.info({ model: id }, 'model unloaded');
    return true;
  }

  /** Counts tokens of a text with a model's tokenizer. */
  async countTokens(id: string, text: string): Promise<number> {
    const entry = await this.#pin(id);
    try {
      return entry.model.tokenize(text).length;
    } finally {
      this.#unpin(entry);
    }
  }

  /**
   * Refuses (PromptTooLongError) a prompt that does not fit a sequence's context, before any
   * sequence is reserved or any stream opened.
   */
  async checkPrompt(request: GenerationRequest): Promise<void> {
    const entry = await this.#pin(request.model);
    try {
      if (request.messages) entry.chatWrapper ??= resolveChatWrapper(entry.model) ?? undefined;
      if (request.jsonSchema) await this.#grammars.get(entry.model.llama, request.jsonSchema);
      const contextSize = entry.contexts[0]!.contextSize; // per sequence
      const room = promptRoom(entry.model, request, entry.chatWrapper, contextSize);
      if (room <= 0) throw new PromptTooLongError(contextSize - room, contextSize);
    } finally {
      this.#unpin(entry);
    }
  }

  /**
   * Waits for a free sequence of the model (loading it if needed). Rejects at once with
   * `QueueFullError` when the wait queue is full, so callers can answer 503 before streaming.
   */
  async reserve(modelId: string, signal?: AbortSignal): Promise<Reservation> {
    const started = performance.now();
    const entry = await this.#pin(modelId);
    const queued = performance.now();
    let lease;
    try {
      lease = await entry.pool.acquire(signal);
    } catch (error) {
      this.#unpin(entry);
      throw error;
    }
    this.observer.queueWaited?.(modelId, (performance.now() - queued) / 1000);
    let released = false;
    return {
      waitedMs: performance.now() - started,
      generate: async (request, hooks = {}) => {
        entry.lastUsed = Date.now();
        if (request.messages) entry.chatWrapper ??= resolveChatWrapper(entry.model) ?? undefined;
        const unloading = entry.unloading.signal;
        const signal = hooks.signal ? AbortSignal.any([hooks.signal, unloading]) : unloading;
        const grammar = request.jsonSchema ? await this.#grammars.get(entry.model.llama, request.jsonSchema) : undefined;
        const alone = this.config.engine.isolate_deterministic && isDeterministic(request);
        const result = await generateOn(lease.item, request, { ...hooks, signal }, started, entry.chatWrapper, grammar, alone);
        // Cut short by an unload or the shutdown, not by the client: a failure worth a retry, not a
        // result, though what it made so far goes with it (a stream has sent it).
        if (unloading.aborted && !hooks.signal?.aborted) throw cutShort(unloading.reason, result);
        return result;
      },
      release: () => {
        if (released) return;
        released = true;
        lease.release();
        this.#unpin(entry);
      },
    };
  }

  /**
   * Generates one completion on a free sequence. `onText` sees each text chunk as it is produced;
   * aborting `signal` stops generation (finish reason `cancelled`) and frees the sequence.
   */
  async generate(request: GenerationRequest, hooks: GenerationHooks = {}): Promise<GenerationResult> {
    const reservation = await this.reserve(request.model, hooks.signal);
    try {
      return await reservation.generate(request, hooks);
    } finally {
      reservation.release();
    }
  }

  /**
   * Embeds each input with the model's embedding context, one request at a time per model, in a
   * queue bounded like generation's (full: QueueFullError); `signal` stops between inputs.
   */
  async embed(id: string, inputs: readonly string[], signal?: AbortSignal): Promise<{ vectors: number[][]; promptTokens: number }> {
    const entry = await this.#pin(id);
    if (entry.embeddingWaiting >= this.config.engine.max_queue) {
      this.#unpin(entry);
      throw new QueueFullError(entry.embeddingWaiting);
    }
    entry.embeddingWaiting++; // counted from now: two callers checking together cannot both pass
    let started = false;
    try {
      entry.embedding ??= entry.model
        .createEmbeddingContext({ contextSize: this.config.engine.context_size, threads: this.config.engine.threads, batchSize: this.config.engine.batch_size })
        .then((context) => {
          const inner = (context as unknown as { _llamaContext?: LlamaContext })._llamaContext;
          if (inner) attachThreadpool(inner, inner.idealThreads); // the configured threads, as node-llama-cpp caps them
          return context;
        })
        .catch((error: unknown) => {
          entry.embedding = undefined; // a failed start is not kept: the next request tries again
          throw error;
        });
      const context = await entry.embedding;
      const run = entry.embeddingBusy.then(async () => {
        started = true;
        entry.embeddingWaiting--;
        const vectors: number[][] = [];
        let promptTokens = 0;
        // Every input is measured before any is embedded: one too long for the context is the
        // caller's error (400), found before work is spent on the others.
        const tokenized = inputs.map((input) => entry.model.tokenize(input));
        const contextSize = this.config.engine.context_size;
        const tooLong = tokenized.findIndex((tokens) => tokens.length >= contextSize);
        if (tooLong >= 0) throw new PromptTooLongError(tokenized[tooLong]!.length, contextSize, tooLong);
        for (const [index, tokens] of tokenized.entries()) {
          signal?.throwIfAborted();
          entry.unloading.signal.throwIfAborted();
          promptTokens += tokens.length;
          try {
            vectors.push([...(await context.getEmbeddingFor(tokens)).vector]);
          } catch (error) {
            // The usable context can be smaller than configured (llama.cpp's own reservations).
            if (error instanceof Error && /longer than the usable context/.test(error.message)) throw new PromptTooLongError(tokens.length, contextSize, index);
            throw error;
          }
        }
        return { vectors, promptTokens };
      });
      entry.embeddingBusy = run.catch(() => undefined);
      return await run;
    } finally {
      if (!started) entry.embeddingWaiting--;
      this.#unpin(entry);
    }
  }

  /**
   * Ends every running generation and waiting request with `reason` (the shutdown's last step
   * before close). Each ends like an unload: the caller sees `reason` thrown.
   */
  stopGenerations(reason: Error): void {
    for (const entry of this.#loaded.values()) {
      entry.pool.rejectWaiting(reason);
      if (!entry.unloading.signal.aborted) entry.unloading.abort(reason);
    }
  }

  /** Sequences in use and requests waiting, per loaded model. */
  stats(): { model: string; busy: number; waiting: number; sequences: number }[] {
    return [...this.#loaded.values()].map((m) => ({ model: m.id, busy: m.pool.busy, waiting: m.pool.waiting, sequences: m.pool.size }));
  }

  async close(): Promise<void> {
    for (const id of [...this.#loaded.keys()]) await this.unload(id);
    // node-llama-cpp 3.21.1 leaks a dispose guard when a model fails to load; once that half-made
    // model is garbage-collected, disposing the binding waits forever. Never let that hold up exit.
    let timer: NodeJS.Timeout | undefined;
    const disposed = await Promise.race([
      this.#llama?.dispose().then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(resolve, 2_000, false)).unref()),
    ]);
    clearTimeout(timer);
    if (disposed === false) this.logger.warn('the llama.cpp binding did not dispose within 2 s (after a failed model load); going on');
  }
}

const round = (ms: number) => Math.round(ms * 100) / 100;

// checkPrompt and the generation both need a request's prompt room: worked out once per request.
const promptRooms = new WeakMap<GenerationRequest, number>();

/**
 * Most tokens a plain prompt of this many UTF-8 bytes can take: every token of llama.cpp's
 * tokenizers stands for at least one byte of the text (byte-level BPE, SentencePiece with byte
 * fallback), plus the BOS, a leading-space piece and an EOS some vocabularies add.
 */
const tokenBound = (bytes: number) => bytes + 4;

/**
 * How many tokens the sequence's context leaves after the request's prompt, for generation; at
 * least `maxTokens` is all the request needs to know. A plain prompt whose byte count already
 * leaves that much room is not tokenized here (that was on the way to every first token); a chat
 * prompt, or one near the limit, is measured exactly (chat template and functions applied; a plain
 * prompt tokenized as completion.ts decodes it, BOS counted).
 * Zero or less: the prompt does not fit.
 */
function promptRoom(model: LlamaModel, request: GenerationRequest, chatWrapper: ChatWrapper | undefined, contextSize: number): number {
  let room = promptRooms.get(request);
  if (room !== undefined) return room;
  if (request.messages) {
    const wrapper = chatWrapper ?? resolveChatWrapper(model);
    const length = wrapper ? renderChat(model, request, wrapper).tokens.length : 0;
    room = contextSize - length;
  } else {
    const prompt = request.prompt ?? '';
    const bound = tokenBound(Buffer.byteLength(prompt));
    room = bound + request.maxTokens <= contextSize ? contextSize - bound : contextSize - promptTokens(model, prompt).length;
  }
  promptRooms.set(request, room);
  return room;
}

/**
 * What the shared contexts' kernel checks found (decode-loop.ts checkBatchShapes): whether every one
 * batches deterministic tokens, and whether one pads each lone one (#loneDiffers); none: no shared context.
 */
function sharedChecks(sequences: readonly EngineSequence[]): { batch_shapes_agree?: boolean; lone_tokens_padded?: boolean } {
  const shared = sequences.filter((item) => item.sequence.context.totalSequences > 1);
  if (shared.length === 0) return {};
  return { batch_shapes_agree: shared.every((item) => item.loop.batchShapesAgree), lone_tokens_padded: shared.some((item) => item.loop.padsEveryLoneToken) };
}

/** A seed, or greedy sampling (the engine's default temperature is 0): the same request must give the same text. */
export function isDeterministic(request: Pick<GenerationRequest, 'seed' | 'temperature'>): boolean {
  return request.seed !== undefined || (request.temperature ?? 0) === 0;
}

async function generateOn(
  { sequence, loop }: EngineSequence,
  request: GenerationRequest,
  hooks: GenerationHooks,
  started: number,
  chatWrapper: ChatWrapper | undefined,
  grammar: LlamaGrammar | undefined,
  alone: boolean,
): Promise<GenerationResult> {
  const acquired = performance.now();
  // Stateless requests: the sequence starts empty, so the same seed gives the same text. The
  // engine's own generations leave it empty; after node-llama-cpp's (a chat) it is cleared, which
  // takes the context's lock, so waits for a step of the others (no run of theirs meanwhile).
  if (sequence.nextTokenIndex > 0) {
    const resume = loop.pauseRuns();
    try {
      await sequence.clearHistory();
    } finally {
      resume();
    }
  }
  // A request never holds more than its sequence's context: refuse a prompt that fills it, and
  // end generation (finish reason `length`) where the context is full rather than shifting it.
  const room = promptRoom(sequence.model, request, chatWrapper, sequence.contextSize);
  if (room <= 0) throw new PromptTooLongError(sequence.contextSize - room, sequence.contextSize);
  if (!request.messages) return completeOn(loop, sequence, request, room, hooks, started, acquired, grammar, alone);
  const wrapper = chatWrapper ?? resolveChatWrapper(sequence.model) ?? undefined;
  const chat = wrapper && renderChat(sequence.model, request, wrapper);
  // A chat that needs nothing of LlamaChat but its template and stops (chat.ts): a completion of the rendered prompt.
  if (chat?.plain) return completeOn(loop, sequence, request, room, hooks, started, acquired, grammar, alone, { tokens: chat.tokens, ...chat.plain });
  loop.chatStarted(sequence, { alone, signal: hooks.signal });
  try {
    return await chatOn(sequence, { ...request, messages: request.messages }, room, hooks, started, acquired, chatWrapper, grammar);
  } finally {
    loop.chatEnded(sequence);
  }
}

/** A plain prompt, or a chat's rendered prompt (`chat`): on the context's own decode loop (decode-loop.ts). */
async function completeOn(
  loop: DecodeLoop,
  sequence: LlamaContextSequence,
  request: GenerationRequest,
  room: number,
  hooks: GenerationHooks,
  started: number,
  acquired: number,
  grammar: LlamaGrammar | undefined,
  alone: boolean,
  chat?: { tokens: Token[]; stops: string[]; stopTokens: Token[][] },
): Promise<GenerationResult> {
  let firstTokenAt: number | undefined;
  const outcome = await complete(loop, sequence, {
    alone,
    prompt: chat?.tokens ?? request.prompt ?? '',
    stopTokens: chat?.stopTokens,
    incompleteEnd: chat ? 'drop' : 'keep',
    maxTokens: Math.min(request.maxTokens, room),
    temperature: request.temperature,
    topP: request.topP,
    topK: request.topK,
    seed: request.seed,
    stop: chat ? [...chat.stops, ...(request.stop ?? [])] : request.stop,
    grammar,
    signal: hooks.signal,
    onText: hooks.onText,
    onFirstToken: () => (firstTokenAt = performance.now()),
  });
  return result(outcome.text, finishReasonOf(outcome.stopReason, hooks.signal), outcome.promptTokens, outcome.completionTokens, started, acquired, firstTokenAt);
}

/** A chat: node-llama-cpp's LlamaChat (its templates, stop texts and function calling). */
async function chatOn(
  sequence: LlamaContextSequence,
  request: GenerationRequest & { messages: ChatMessage[] },
  room: number,
  hooks: GenerationHooks,
  started: number,
  acquired: number,
  chatWrapper: ChatWrapper | undefined,
  grammar: LlamaGrammar | undefined,
): Promise<GenerationResult> {
  const wrapper = chatWrapper ?? resolveChatWrapper(sequence.model) ?? undefined;
  const history = toChatHistory(request, wrapper);
  let completionTokens = 0;
  let streamed = '';
  // The prompt as measured for the room (the template rendered and tokenized as LlamaChat does):
  // the sequence's length at the first token LlamaChat hands over also holds any tokens it held
  // back (a possible start of a stop text).
  const promptTokens = sequence.contextSize - room;
  let firstTokenAt: number | undefined;
  const options = {
    maxTokens: Math.min(request.maxTokens, room),
    temperature: request.temperature,
    topP: request.topP,
    topK: request.topK,
    seed: request.seed,
    signal: hooks.signal,
    stopOnAbortSignal: true,
    customStopTriggers: request.stop?.length ? request.stop : undefined,
    grammar,
    onToken: (tokens: readonly unknown[]) => {
      firstTokenAt ??= performance.now();
      completionTokens += tokens.length;
    },
    onTextChunk: (text: string) => {
      streamed += text;
      hooks.onText?.(text);
    },
  };
  const chat = new LlamaChat({ contextSequence: sequence, autoDisposeSequence: false, ...(wrapper && { chatWrapper: wrapper }) });
  let response;
  try {
    // node-llama-cpp's types keep `grammar` and `functions` apart; a request has one or neither.
    const chatOptions = request.functions?.mode === 'auto' ? { ...options, grammar: undefined, ...autoFunctions(request) } : options;
    response = await chat.generateResponse(history, chatOptions as Parameters<LlamaChat['generateResponse']>[1]);
  } catch (error) {
    // Aborted before LlamaChat's generation loop took over (its prompt, its first token): it throws
    // where a later abort ends the response. Either way the request was cancelled, as a plain
    // prompt's is.
    if (!hooks.signal?.aborted) throw error;
    return result(streamed, 'cancelled', promptTokens, completionTokens, started, acquired, firstTokenAt);
  } finally {
    chat.dispose({ disposeSequence: false });
  }
  const functionCalls = response.functionCalls?.map((call) => ({ name: call.functionName, arguments: call.params ?? {} }));
  return { ...result(response.response, finishReasonOf(response.metadata.stopReason, hooks.signal), promptTokens, completionTokens, started, acquired, firstTokenAt), ...(functionCalls?.length && { functionCalls }) };
}

/** A generation cut short by its caller is `cancelled`; one that reached its token limit `length`; any other end `stop`. */
const finishReasonOf = (stopReason: string, signal: AbortSignal | undefined): FinishReason =>
  signal?.aborted || stopReason === 'abort' ? 'cancelled' : stopReason === 'maxTokens' ? 'length' : 'stop';

function result(
  text: string,
  finishReason: FinishReason,
  promptTokens: number,
  completionTokens: number,
  started: number,
  acquired: number,
  firstTokenAt: number | undefined,
): GenerationResult {
  const finished = performance.now();
  const generationMs = firstTokenAt === undefined ? 0 : finished - firstTokenAt;
  return {
    text,
    finishReason,
    usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
    timings: {
      queued_ms: round(acquired - started),
      prompt_ms: round((firstTokenAt ?? finished) - acquired),
      generation_ms: round(generationMs),
      total_ms: round(finished - started),
      tokens_per_second: generationMs > 0 && completionTokens > 1 ? round(((completionTokens - 1) * 1000) / generationMs) : 0,
    },
  };
}
