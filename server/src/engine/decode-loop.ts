import { withLock } from 'lifecycle-utils';
import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';
import { addonObjects, engineAddon, nativeStepWanted, type EngineAddon } from './native-addon.js';
import type { ContextThreadpool, ThreadShare } from './threadpool.js';

/**
 * One context's decode steps, driven straight on node-llama-cpp's binding as llama-server's loop
 * drives llama.cpp: each step puts the next token of every sequence generating on the context, and
 * as much of a waiting prompt as fits, into one batch, decodes it once on a worker thread, then
 * samples the next token of each.
 *
 * Two kinds of work share the steps:
 * - the engine's own generations (`run`, for plain prompts: completion.ts), sampled here, with
 *   nothing between two decodes but the sampling and the caller's handling of the token;
 * - node-llama-cpp's decodes (LlamaChat, `sequence.evaluate`): the context's `_decodeTokens` is
 *   routed here, so its own dispatcher (locks, a threads allocator and a scheduler around every
 *   batch) never runs, and a chat and a completion on the same context share each step.
 *
 * A sequence that node-llama-cpp drives (`chatStarted`/`chatEnded` around it) queues its next
 * token a few promise hops after its last one is sampled; a step waits for it (event-driven, at
 * most `MAX_WAIT_MS`), so every generating sequence is in every step.
 *
 * A token decoded beside others can get very slightly different numbers than alone (a probability
 * by ~5e-5 on the demo model), which now and then changes a greedy or seeded text: where the CPU's
 * matrix kernels sum in another order for another batch shape (checkBatchShapes finds out when the
 * context opens), and where flash attention splits a lone token's cells among the threads, which it
 * does for a long sequence (#padsFor). Work marked `alone` (the engine marks deterministic requests
 * so) keeps the numbers it gets alone: its prompt decodes in steps of its own; its next tokens join
 * the batch where the kernels agree, each of its rows kept in a micro-batch of several sequences
 * (padded with a row of another sequence where needed), and elsewhere decode in steps of their own
 * too. Alone steps and the batch of the others take turns, one step each (the batch keeps its
 * order: generating sequences first, then the prompts in the order they came).
 *
 * On the tiny demo model node-llama-cpp's own completion loop spends 0.27 ms of main-thread CPU a
 * token against 0.07 for this one (bench/token-steps.ts), more than the decode itself.
 *
 * With the engine's native addon (server/native/step.cc) a step is one worker hop: the decode, then
 * the next token of each of ours sampled on the same thread with its node-llama-cpp sampler, as
 * llama-server samples; node-llama-cpp's binding alone takes a hop for the decode and one more per
 * sequence to sample (on the tiny model 1.3-1.4x the tokens/s of one stream: bench/arrangements.ts
 * `1x1x1` against `1x1x1-hops`). node-llama-cpp's own decodes (a chat's) still sample in their
 * own calls, after the step. Generations of ours go on in runs of steps on a thread of the addon's
 * own while nothing else waits on the context, each step's tokens handed on as they come (#run).
 *
 * This reaches into node-llama-cpp 3.21.1 internals (the context's `_ctx` binding and
 * `_decodeTokens`, a sequence's `_sequenceId`, the `AddonSampler` binding); the version is pinned
 * exactly, the constructor throws if they are gone, and server/test/decode-loop.test.ts fails if their
 * behaviour changes. A generation of the engine's own leaves node-llama-cpp's idea of the sequence
 * as it was (empty): its cells are removed when it ends.
 */
const MAX_WAIT_MS = 3;
/** How long a run of steps on its own thread (#run) decodes before it hands back to the loop. */
const RUN_BUDGET_MS = 50;

/**
 * What a wrapper of a context's binding (a test's Proxy of `LlamaContext._ctx` that only watches
 * the batches) answers with the binding it wraps, so that steps still decode through the native
 * addon's one-hop step. A wrapper without it sees every `decodeBatch` and `sampleToken` call.
 */
export const WRAPPED_BINDING = Symbol.for('inferno.decode-loop.wrapped-binding');

let aheadWanted = true;
let runBudgetMs = RUN_BUDGET_MS;
/**
 * Whether loops opened from now on decode a lone generation's next steps ahead of their tokens'
 * handling (#run; default yes), and for how long a run decodes: for benchmarks and tests that compare.
 */
export function useDecodeAhead(on: boolean, budgetMs = RUN_BUDGET_MS): void {
  aheadWanted = on;
  runBudgetMs = budgetMs;
}

/**
 * Where a micro-batch of one row differs (#loneDiffers), a lone deterministic token is padded only
 * if a decode of two rows costs at most this many times one row's (checkBatchShapes times both);
 * else such tokens keep steps of their own. On the EPYC of session 16 two f16 rows cost twice one
 * (one greedy stream of the small f16 model through the server: 105 tokens/s padded against 206).
 */
const PAD_COST_LIMIT = 1.3;
let padCostLimit = PAD_COST_LIMIT;
/** The pad's cost limit of the checks from now on (tests: Infinity pads wherever the numbers ask for it, 0 never where a lone row differs). */
export function usePadCostLimit(limit = PAD_COST_LIMIT): void {
  padCostLimit = limit;
}

/** node-llama-cpp's DisposeGuard (`LlamaContext._backendContextDisposeGuard`): disposal waits for its handles; a new one throws DisposedError once disposal is asked for. */
interface DisposeGuard {
  createPreventDisposalHandle(): { dispose(): void };
}

/** The binding calls used (node-llama-cpp's AddonContext). */
interface Binding {
  initBatch(size: number): void;
  addToBatch(sequenceId: number, firstPosition: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
  decodeBatch(): Promise<void>;
  sampleToken(batchLogitIndex: number, sampler: NativeSampler): Promise<number>;
  disposeSequence(sequenceId: number): void;
  removeTokenCellsFromSequence(sequenceId: number, startPosition: number, endPosition: number): boolean;
  getSequenceKvCacheMaxPosition(sequenceId: number): number;
  setThreads(threads: number): void;
}

/** node-llama-cpp's AddonSampler: a sampler chain configured by `applyConfig`. */
export interface NativeSampler {
  applyConfig(config: Record<string, unknown>): void;
  dispose(): void;
}

export interface SamplerConfig {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  seed: number;
  /** A grammar evaluation state's binding object (`LlamaGrammarEvaluationState._state`). */
  grammarEvaluationState?: unknown;
}

/** A sampler for `model` (dispose it when the generation ends). */
export function createSampler(model: LlamaModel, config: SamplerConfig): NativeSampler {
  const internals = model as unknown as { _llama?: { _bindings?: { AddonSampler?: new (model: unknown) => NativeSampler } }; _model?: unknown };
  const AddonSampler = internals._llama?._bindings?.AddonSampler;
  if (typeof AddonSampler !== 'function' || !internals._model) throw new Error('node-llama-cpp internals changed: no AddonSampler binding');
  const sampler = new AddonSampler(internals._model);
  const applied: Record<string, unknown> = { temperature: config.temperature, topK: config.topK, topP: config.topP, minP: config.minP, seed: config.seed };
  if (config.grammarEvaluationState !== undefined) applied.grammarEvaluationState = config.grammarEvaluationState;
  sampler.applyConfig(applied);
  return sampler;
}

/** What a generation does with each token sampled for it: false ends it. */
export type TokenSink = (token: Token) => boolean;

/** node-llama-cpp 3.21.1's queued decode (`LlamaContext._decodeTokens`' first argument). */
interface ForeignRequest {
  sequenceId: number;
  tokens: readonly number[];
  logits: readonly (boolean | undefined)[];
  firstTokenSequenceIndex: number;
  afterBatchAction?: (sequenceStateLength: number) => unknown;
}
type LogitMapper = (batchLogitIndex: number, position: number) => unknown;

interface Pending {
  id: number;
  /** Tokens to decode from `offset` on, the first of them at `position` in the sequence. */
  tokens: Uint32Array;
  offset: number;
  position: number;
  /** Positions (within `tokens`) whose logits are wanted. */
  wanted: (index: number) => boolean;
  /** This step's chunk: where it lies in `tokens`, its first position in the sequence, and its batch logit indexes. */
  chunk: { from: number; to: number; at: number; logits: Uint32Array };
  /** `left`: how many more tokens its sink takes at most (it ends on the last of them). */
  own?: { sampler: NativeSampler; sink: TokenSink; signal?: AbortSignal; native: boolean; left: number };
  /** Decoded in steps of its own, never beside another sequence's tokens. */
  alone: boolean;
  /** Ended while its next steps were decoding (#run): finished, with this error if any, once they are done. */
  ending?: { error?: unknown };
  /** node-llama-cpp's decode; `signal`: its chat's (an abort rejects it at the next step, within a long prompt too). */
  foreign?: { mapper: LogitMapper; mapped: [number, unknown][]; afterBatch?: (length: number) => unknown; signal?: AbortSignal };
  resolve: (value: never) => void;
  reject: (error: unknown) => void;
}

const NO_LOGITS = new Uint32Array(0);
/** A pad's row where it asks for logits (#loneDiffers): its one token's. */
const PAD_LOGITS = Uint32Array.of(0);

/** Rows of sequences not stepping, decoded beside a step's (#padsFor): each id's next position. */
interface Pads {
  ids: Int32Array;
  positions: Int32Array;
  /** Stepping sequences whose first row of the step asks for logits too (nobody reads them): #padsFor. */
  outputs?: Set<number>;
}
const NO_PADS: Pads = { ids: new Int32Array(0), positions: new Int32Array(0) };
/**
 * From this position on a lone token's micro-batch is padded on several threads (#padsFor): its
 * attention views the sequence's cells padded to 256, and takes another way from 512 on, once
 * 257 cells are used (64 to spare). Below it a lone token gets a batch's numbers unpadded, and a
 * pad would cost (one stream of the small q8_0 model: 0.8-0.9x the tokens/s).
 */
const LONE_PAD_FROM = 192;
/** The error of a step (or a native run) whose pad's cell stayed in its sequence. */
const PAD_NOT_REMOVED = "a pad's cell could not be removed from its sequence";

/** A decoded step: the tokens the native step sampled for ours (none: they sample after it), or why it failed. */
type Decoded = { sampled?: Map<Pending, number | { error: unknown }> } | { error: unknown };

export class DecodeLoop {
  readonly #context: LlamaContext;
  readonly #disposeGuard: DisposeGuard;
  readonly #batchSize: number;
  /** Cells of each sequence: a generation that reaches them ends (the step it would overrun is shared). */
  readonly #contextSize: number;
  /** Several sequences share the context: node-llama-cpp's own context operations (clearing a sequence) take its lock, and so does each step. */
  readonly #shared: boolean;
  readonly #queue = new Set<Pending>();
  /** The queued work to decode alone, in the order of its turns (each goes to the back after its step). */
  readonly #alone = new Set<Pending>();
  /** Alone steps since the batch of the others last had its turn. */
  #aloneSinceBatch = 0;
  #running = false;
  /** Shared with the model's other contexts (each with a persistent threadpool of `total` threads); none: the context's own threads, fixed. */
  readonly #threads?: ThreadShare;
  readonly #pool?: ContextThreadpool;
  #currentThreads = 0;
  /**
   * Sequences node-llama-cpp is generating on (between `chatStarted` and `chatEnded`): `engaged`
   * once its first decode came (before that it is still preparing its prompt, and no step waits
   * for it); `alone`, decoded in steps of its own; `signal`, its request's.
   */
  readonly #chats = new Map<number, { engaged: boolean; alone: boolean; signal?: AbortSignal }>();
  /** Of those, the ones with a decode queued and not yet in a step. */
  readonly #queuedChats = new Set<number>();
  #waiter?: () => void;
  /** Steps that went ahead after `MAX_WAIT_MS` without a chat's token (for tests and diagnosis). */
  timeouts = 0;
  /** Steps decoded and sampled in one hop by the native addon (for tests and diagnosis). */
  nativeSteps = 0;
  /** Of those, steps decoded in runs ahead of their tokens' handling (#run). */
  aheadSteps = 0;
  /** Runs started (#run). */
  runs = 0;
  /** The binding as node-llama-cpp made it, and the addon's step for it (none: decodeBatch, then sampleToken per sequence). */
  readonly #raw: object;
  readonly #native?: EngineAddon['step'];
  readonly #nativeRun?: EngineAddon['run'];
  readonly #addon?: EngineAddon;
  /**
   * A token's numbers on this context are the same, to the bit, in a micro-batch of any number of
   * sequences as alone (checkBatchShapes): deterministic generations then share the steps.
   */
  #batchShapesAgree = false;
  /**
   * Of those, a context whose kernels give a micro-batch of one row (or of one row that asks for
   * logits) other numbers than a batch, though batches of every other width agree (ggml's f16 matrix
   * kernels on an AMD EPYC, session 16: a one-row product takes another kernel). A deterministic
   * token's micro-batch then always gets a pad beside it, and every pad asks for logits (#padsFor).
   */
  #loneDiffers = false;
  /** The pads of the step last filled (#fill), for the run that may follow it. */
  #pads: Pads = NO_PADS;
  /** Steps may take pads (#padsFor): a shared context whose memory is a plain KV cache (the native addon tells). */
  #padded = false;
  #checked?: Promise<boolean>;
  readonly #AddonSampler?: abstract new (...args: never[]) => object;
  readonly #decodeAhead = aheadWanted;
  readonly #runBudgetMs = runBudgetMs;
  /** The run in flight's control (#run): set, it stops at its next step. */
  #runControl?: Int32Array;
  /** Callers of `pauseRuns` not yet done: no run starts meanwhile. */
  #runsPaused = 0;

  constructor(context: LlamaContext, threads?: { share: ThreadShare; pool: ContextThreadpool }) {
    const internals = context as unknown as { _ctx?: Partial<Binding>; _decodeTokens?: unknown; _backendContextDisposeGuard?: Partial<DisposeGuard> };
    for (const name of ['initBatch', 'addToBatch', 'decodeBatch', 'sampleToken', 'disposeSequence', 'removeTokenCellsFromSequence', 'getSequenceKvCacheMaxPosition', 'setThreads'] as const) {
      if (typeof internals._ctx?.[name] !== 'function') throw new Error(`node-llama-cpp internals changed: the context binding has no ${name}`);
    }
    if (typeof internals._decodeTokens !== 'function') throw new Error('node-llama-cpp internals changed: the context has no _decodeTokens');
    if (typeof internals._backendContextDisposeGuard?.createPreventDisposalHandle !== 'function') throw new Error('node-llama-cpp internals changed: the context has no dispose guard');
    this.#disposeGuard = internals._backendContextDisposeGuard as DisposeGuard;
    this.#context = context;
    this.#batchSize = context.batchSize;
    this.#contextSize = context.contextSize;
    this.#shared = context.totalSequences > 1;
    this.#threads = threads?.share;
    this.#pool = threads?.pool;
    this.#currentThreads = context.currentThreads;
    this.#raw = internals._ctx as object;
    const addon = nativeStepWanted() ? engineAddon() : undefined;
    const objects = addon && addonObjects(context);
    if (objects?.AddonSampler && addon!.stepUnavailable(objects.binding) === undefined) {
      this.#native = addon!.step;
      this.#nativeRun = addon!.run;
      this.#addon = addon;
      this.#padded = this.#shared && addon!.plainCache(objects.binding) === true;
      this.#AddonSampler = objects.AddonSampler;
    }
    if (threads) this.#useThreadShare(); // one thread until the share has timed the model's decodes
    // node-llama-cpp's decodes come here instead of to its own dispatcher.
    internals._decodeTokens = (request: ForeignRequest, mapper: LogitMapper) => this.#foreign(request, mapper);
  }

  /**
   * Another context got work or ended (ThreadShare): a run in flight on a share that is no longer
   * this context's hands back at its next step, so that the next decodes take the new share.
   */
  shareChanged(): void {
    if (this.#threads && this.#threads.share !== this.#currentThreads) this.#handBack();
  }

  /** A run in flight hands back at its next step. */
  #handBack(): void {
    if (this.#runControl) this.#runControl[0] = 1;
  }

  /**
   * No run until the returned function is called, and one in flight hands back at its next step:
   * for node-llama-cpp's own use of the context (clearing a sequence), which takes the context's
   * lock. The loop holds that lock through each step of a shared context, a run included; between
   * steps its next holder is the one that asked first (the lock's queue is in order), so the
   * clearing waits for one step, not for a run.
   */
  pauseRuns(): () => void {
    this.#runsPaused++;
    this.#handBack();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#runsPaused--;
    };
  }

  /**
   * Checks, once, before the context's first step and before its sequences are handed out,
   * whether a token's numbers here are the same in a micro-batch of several sequences as alone:
   * micro-batches of 2, ... all of the context's sequences, a token each, must leave each
   * sequence's token the same logits to the bit at every width; and whether the first one's alone
   * are those too (where they are not, #loneDiffers: a lone token is always padded). On
   * the share's total threads: a matrix kernel computes each value on one thread, so the thread
   * count changes no value, and a row of a micro-batch of several sequences takes flash
   * attention's per-row path on any number of threads.
   * It depends on the CPU's matrix kernels (ggml picks them by the batch's shape): on a Xeon with AMX
   * (session 15) every width agreed; on an AMD EPYC (session 16) so did q8_0, while f16 gave one row
   * (one output row: the last layer's product) other numbers than several. Where it holds, deterministic generations share the
   * steps (#padsFor keeps a row of theirs that flash attention would treat otherwise in a
   * micro-batch of several sequences); where it does not, or without the native addon (which reads
   * the logits), or on a recurrent or hybrid model (whose state a pad's cell could not leave
   * as it was), they decode in steps of their own.
   */
  checkBatchShapes(): Promise<boolean> {
    this.#checked ??= this.#checkBatchShapes();
    return this.#checked;
  }

  async #checkBatchShapes(): Promise<boolean> {
    const addon = this.#addon;
    if (!addon || !this.#padded || this.#queue.size > 0) return false;
    const binding = this.#binding;
    const total = this.#context.totalSequences;
    // Each row's logits at the first width of several it is in (row i: token 1 + i of sequence i,
    // at position 0), and the first row's alone.
    const first: Uint32Array[] = [];
    let lone: Uint32Array | undefined;
    let agree = true;
    const same = (a: Uint32Array, b: Uint32Array) => a.length === b.length && a.every((bits, i) => bits === b[i]);
    // On every thread the context may get (the thread share starts it on one).
    const threads = this.#threads?.total ?? this.#currentThreads;
    try {
      await this.#onThreads(threads, async () => {
        for (let width = 1; width <= total; width++) {
          binding.initBatch(width);
          for (let id = 0; id < width; id++) binding.addToBatch(id, 0, Uint32Array.of(1 + id), Uint32Array.of(0));
          try {
            await binding.decodeBatch();
            for (let id = 0; id < width; id++) {
              const row = new Uint32Array(addon.logitsAt(this.#raw, id).buffer);
              const before = first[id];
              if (width === 1) lone = row;
              else if (!before) first[id] = row;
              else agree &&= same(row, before);
            }
          } finally {
            for (let id = 0; id < width; id++) binding.disposeSequence(id);
          }
        }
      });
    } catch {
      return false; // (the steps find out what is wrong with the context)
    }
    const loneDiffers = agree && !same(lone!, first[0]!);
    if (loneDiffers && !(await this.#padAffordable(threads))) agree = false;
    this.#batchShapesAgree = agree;
    this.#loneDiffers = agree && loneDiffers;
    return agree;
  }

  /**
   * Whether a decode of two rows (a lone token and its pad, both asking for logits) costs at most
   * padCostLimit times one row's on `threads` threads: medians of five each, alternating.
   */
  async #padAffordable(threads: number): Promise<boolean> {
    if (padCostLimit === Infinity) return true;
    if (padCostLimit <= 0) return false;
    const binding = this.#binding;
    const times: [number[], number[]] = [[], []];
    try {
      await this.#onThreads(threads, async () => {
        for (let round = 0; round < 6; round++) {
          for (const width of [1, 2]) {
            binding.initBatch(width);
            for (let id = 0; id < width; id++) binding.addToBatch(id, 0, Uint32Array.of(1 + id), Uint32Array.of(0));
            try {
              const started = performance.now();
              await binding.decodeBatch();
              if (round > 0) times[width - 1]!.push(performance.now() - started); // (the first round warms up)
            } finally {
              for (let id = 0; id < width; id++) binding.disposeSequence(id);
            }
          }
        }
      });
    } catch {
      return false;
    }
    const median = (values: number[]) => values.sort((a, b) => a - b)[2]!;
    return median(times[1]) <= padCostLimit * median(times[0]);
  }

  /** Runs `work` holding the context's lock, the context on `threads` threads meanwhile. */
  async #onThreads(threads: number, work: () => Promise<void>): Promise<void> {
    const binding = this.#binding;
    await withLock([this.#context, 'context'], async () => {
      if (threads !== this.#currentThreads) {
        binding.setThreads(threads);
        this.#pool?.use(threads > 1);
      }
      try {
        await work();
      } finally {
        if (threads !== this.#currentThreads) {
          binding.setThreads(this.#currentThreads);
          this.#pool?.use(this.#currentThreads > 1);
        }
      }
    });
  }

  /** Whether deterministic generations share the steps here (checkBatchShapes). */
  get batchShapesAgree(): boolean {
    return this.#batchShapesAgree;
  }

  /** Whether, sharing them, a deterministic token is always padded, and every pad asks for logits (#loneDiffers). */
  get padsEveryLoneToken(): boolean {
    return this.#loneDiffers;
  }

  /** Whether steps decode and sample in one hop of the native addon. */
  get native(): boolean {
    return this.#native !== undefined;
  }

  /** Read at each use, as node-llama-cpp reads it (a test may wrap it to count steps). */
  get #binding(): Binding {
    return (this.#context as unknown as { _ctx: Binding })._ctx;
  }

  /**
   * node-llama-cpp starts generating on a sequence of this context: steps wait for its tokens.
   * `alone`: its decodes are never batched with another sequence's. `signal`: once aborted, its
   * decode is rejected with the abort's reason at the next step (node-llama-cpp hands a prompt
   * over as one decode, which takes as many steps as it has batches: a long one is not waited out).
   */
  chatStarted(sequence: LlamaContextSequence, { alone = false, signal }: { alone?: boolean; signal?: AbortSignal } = {}): void {
    this.#handBack(); // (its steps will wait for the chat's tokens)
    this.#chats.set(sequenceId(sequence), { engaged: false, alone, signal });
    this.#updateBusy();
  }

  chatEnded(sequence: LlamaContextSequence): void {
    this.#chats.delete(sequenceId(sequence));
    this.#updateBusy();
    this.#poke();
  }

  /**
   * Decodes `prompt` on the (empty) sequence, then feeds `sink` each token sampled after it until
   * `sink` returns false or the sequence's context is full; the sequence is empty again when the
   * promise settles. An abort of `signal` ends it at the next step, within its prompt too (whose
   * steps the others wait for). `alone`: decoded in steps of its own. `limit`: the most tokens
   * `sink` takes (it returns false on the last), so that no step is decoded past them.
   */
  run(sequence: LlamaContextSequence, prompt: readonly Token[], sampler: NativeSampler, sink: TokenSink, { signal, alone = false, limit = Infinity }: { signal?: AbortSignal; alone?: boolean; limit?: number } = {}): Promise<void> {
    const id = sequenceId(sequence);
    if (prompt.length === 0) throw new Error('An empty prompt cannot be decoded');
    const tokens = Uint32Array.from(prompt);
    return new Promise<void>((resolve, reject) => {
      const last = tokens.length - 1;
      const native = this.#AddonSampler !== undefined && sampler instanceof this.#AddonSampler;
      this.#add({ id, tokens, offset: 0, position: 0, wanted: (index) => index === last, chunk: EMPTY_CHUNK, own: { sampler, sink, signal, native, left: limit }, alone, resolve, reject });
    });
  }

  /** node-llama-cpp's decode: resolved with [position, mapped logit] pairs, as its own dispatcher resolves it. */
  #foreign(request: ForeignRequest, mapper: LogitMapper): Promise<[number, unknown][]> {
    const { logits } = request;
    return new Promise((resolve, reject) => {
      const chat = this.#chats.get(request.sequenceId);
      if (chat) {
        chat.engaged = true;
        this.#queuedChats.add(request.sequenceId);
      }
      this.#add({
        id: request.sequenceId,
        tokens: Uint32Array.from(request.tokens),
        offset: 0,
        position: request.firstTokenSequenceIndex,
        wanted: (index) => logits[index] === true,
        chunk: EMPTY_CHUNK,
        foreign: { mapper, mapped: [], afterBatch: request.afterBatchAction, signal: chat?.signal },
        alone: chat?.alone ?? false,
        resolve: resolve as (value: never) => void,
        reject,
      });
    });
  }

  #add(pending: Pending): void {
    this.#handBack(); // a run in flight: the next step takes this too
    this.#queue.add(pending);
    if (pending.alone) this.#alone.add(pending);
    this.#updateBusy();
    this.#poke();
    if (!this.#running) void this.#loop();
  }

  async #loop(): Promise<void> {
    this.#running = true;
    try {
      await null; // decodes queued in the same turn share the first step
      while (this.#queue.size > 0) {
        await this.#gather();
        // Held through the step as node-llama-cpp's dispatcher holds it through a decode: disposal
        // (llama_free, then the threadpool's free) waits for it. Once disposal has begun, the
        // binding is not touched again (its llama_context may be half freed on a worker thread).
        let guard: { dispose(): void };
        try {
          guard = this.#disposeGuard.createPreventDisposalHandle();
        } catch (error) {
          for (const pending of this.#queue) this.#finish(pending, error, undefined, true);
          break;
        }
        try {
          this.#useThreadShare();
          if (this.#shared) await withLock([this.#context, 'context'], () => this.#step());
          else await this.#step();
        } finally {
          guard.dispose();
        }
      }
    } finally {
      this.#running = false;
    }
  }

  /**
   * A context counts as busy in the thread share while it has a generation: queued decodes, or a
   * chat between its tokens (which queues its next decode a few promise hops after the last).
   */
  #updateBusy(): void {
    if (!this.#threads) return;
    if (this.#queue.size > 0 || this.#chats.size > 0) this.#threads.enter(this);
    else this.#threads.leave(this);
  }

  #useThreadShare(): void {
    if (!this.#threads) return;
    const threads = this.#threads.share;
    if (threads === this.#currentThreads) return;
    // Both take effect from the next decode on (llama_set_n_threads, llama_attach_threadpool).
    this.#binding.setThreads(threads);
    this.#pool?.use(threads > 1);
    this.#currentThreads = threads;
  }

  /** Waits (at most MAX_WAIT_MS) until every sequence node-llama-cpp generates on has queued its next token. */
  #gather(): Promise<void> | undefined {
    if (this.#ready()) return undefined;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        this.timeouts++;
        resolve();
      }, MAX_WAIT_MS);
      this.#waiter = () => {
        clearTimeout(timer);
        this.#waiter = undefined;
        resolve();
      };
    });
  }

  #ready(): boolean {
    for (const [id, { engaged }] of this.#chats) if (engaged && !this.#queuedChats.has(id)) return false;
    return true;
  }

  #poke(): void {
    if (this.#waiter && this.#ready()) this.#waiter();
  }

  async #step(): Promise<void> {
    // The next token of every generating sequence, then as much of the prompts waiting as the batch
    // holds (the rest in the next steps), as llama-server fills its batches; or, in its turn, one
    // sequence to decode alone. Turns: the batch, then each alone one once, and again.
    for (const pending of this.#queue) {
      if (pending.own?.signal?.aborted) this.#finish(pending);
      else if (pending.foreign?.signal?.aborted) this.#finish(pending, pending.foreign.signal.reason);
    }
    const next = (pending: Pending) => pending.tokens.length - pending.offset === 1;
    // Where the batch's shape changes no row's numbers, a deterministic generation's next token
    // joins the batch; its prompt (several tokens: chunked as the batch's room allows) still
    // decodes alone.
    const alone = (pending: Pending) => pending.alone && !(this.#batchShapesAgree && next(pending));
    const turns = [...this.#alone].filter(alone);
    const others = this.#queue.size > turns.length;
    let candidates: Pending[];
    const inTurn = turns.length > 0 && (!others || this.#aloneSinceBatch < turns.length);
    if (inTurn) {
      const pending = turns[0]!;
      this.#alone.delete(pending); // to the back of the turns
      this.#alone.add(pending);
      this.#aloneSinceBatch++;
      candidates = [pending];
    } else {
      this.#aloneSinceBatch = 0;
      // A generating sequence's next token first (a chat's comes as a new decode, queued behind any
      // prompt that waits), then the prompts in the order they came.
      const waiting = [...this.#queue].filter((pending) => !alone(pending));
      candidates = [...waiting.filter(next), ...waiting.filter((pending) => !next(pending))];
    }
    const batch = this.#fill(candidates, !inTurn);
    if (batch.length === 0) return;
    const decoded = await this.#decode(batch);
    if ('error' in decoded) {
      for (const pending of batch) this.#finish(pending, decoded.error);
      return;
    }
    // Sample (and map node-llama-cpp's logits) before the next decode overwrites the logits.
    const { sampled } = decoded;
    const outcomes = await Promise.all(batch.map((pending) => (sampled?.has(pending) ? sampled.get(pending) : this.#afterDecode(pending).catch((error: unknown) => ({ error })))));
    const run = this.#run(batch, outcomes);
    if (run) return run;
    for (const [index, pending] of batch.entries()) {
      const outcome = outcomes[index];
      if (outcome && typeof outcome === 'object' && 'error' in outcome) this.#finish(pending, outcome.error);
      else if (pending.own) this.#next(pending, outcome as number | undefined);
      else if (pending.offset === pending.tokens.length) this.#finish(pending, undefined, pending.foreign!.mapped);
    }
  }

  /**
   * Puts `candidates` (as many as fit, in order) into the binding's next batch; those put in.
   * `padded`: with the pads the batch needs (#padsFor; not for a prompt decoded alone).
   */
  #fill(candidates: Pending[], padded: boolean): Pending[] {
    const binding = this.#binding;
    const batch: Pending[] = [];
    let size = 0;
    // Room kept for the pads (at most one per other sequence of the context).
    const room = padded && this.#padded ? Math.max(1, this.#batchSize - (this.#context.totalSequences - 1)) : this.#batchSize;
    for (const pending of candidates) {
      const take = Math.min(pending.tokens.length - pending.offset, room - size);
      if (take <= 0) break;
      pending.chunk = { from: pending.offset, to: pending.offset + take, at: pending.position, logits: NO_LOGITS };
      batch.push(pending);
      size += take;
    }
    if (size === 0) return batch;
    // In ascending sequence order: with a KV stream per sequence, llama.cpp splits a batch into
    // micro-batches of consecutive, increasing sequence ids (llama_batch_allocr::split_equal), so
    // [2, 0, 3, 1] would decode as two graphs and [3, 2, 1, 0] as four, each nearly the cost of the
    // whole step (4 streams on one context: 35 against 22 ms a step on the small q8_0 model).
    batch.sort((a, b) => a.id - b.id);
    const pads = padded ? this.#padsFor(batch, this.#batchSize - size) : NO_PADS;
    this.#pads = pads;
    binding.initBatch(size + pads.ids.length);
    let pad = 0;
    const padToken = batch[0]!.tokens.slice(batch[0]!.offset, batch[0]!.offset + 1); // any token does
    const padsBefore = (id: number) => {
      for (; pad < pads.ids.length && pads.ids[pad]! < id; pad++) binding.addToBatch(pads.ids[pad]!, pads.positions[pad]!, padToken, this.#loneDiffers ? PAD_LOGITS : NO_LOGITS);
    };
    for (const pending of batch) {
      padsBefore(pending.id);
      const { from, to } = pending.chunk;
      const wanted: number[] = [];
      for (let index = from; index < to; index++) if (pending.wanted(index)) wanted.push(index - from);
      // (A row's logits asked for a neighbour's sake, #padsFor: its index left out of the chunk's.)
      const extra = pads.outputs?.has(pending.id) === true && wanted[0] !== 0;
      if (extra) wanted.unshift(0);
      pending.chunk.logits = binding.addToBatch(pending.id, pending.position, pending.tokens.subarray(from, to), wanted.length ? Uint32Array.from(wanted) : NO_LOGITS);
      if (extra) pending.chunk.logits = pending.chunk.logits.subarray(1);
      pending.offset = to;
      pending.position += to - from;
      if (pending.foreign && pending.offset === pending.tokens.length) this.#queuedChats.delete(pending.id);
    }
    padsBefore(Infinity);
    return batch;
  }

  /**
   * The pads a batch of these sequences needs: a row of each sequence whose id lies between two of
   * theirs, and a neighbour's beside a deterministic token that has none in the step (from
   * LONE_PAD_FROM on, on several threads, with flash attention), each at its sequence's next
   * position and removed again after the decode (#decode; the run does the same). Only on a plain
   * KV cache (a recurrent model's state keeps what a removed cell held). With a KV
   * stream per sequence, llama.cpp cuts a batch into micro-batches of consecutive sequence ids
   * (llama_batch_allocr::split_equal): the sequences [0, 2] decode as two graphs, each nearly the
   * cost of the whole step, [0, 1, 2] as one. And on several threads a micro-batch of one
   * sequence's one token takes another way through flash attention once its view of the cells is
   * 512 or more (257 cells used: the view is padded to 256): its cells split among the threads,
   * then reduced (ggml's flash_attn_ext split-KV path), which sums in another order than a batch
   * of several sequences, so a deterministic generation would get other numbers alone than beside
   * others. Padded from LONE_PAD_FROM on, its row is always in a micro-batch of several
   * sequences. Where a micro-batch of one output row differs (#loneDiffers) every pad asks for
   * logits, and a deterministic token gets one from its first position wherever no other row of its
   * micro-batch asks for them. A sequence whose context is full cannot take a pad (none is decoded for it).
   */
  #padsFor(batch: Pending[], most: number): Pads {
    if (!this.#padded) return NO_PADS;
    const total = this.#context.totalSequences;
    const stepping = new Set(batch.map((pending) => pending.id));
    const binding = this.#binding;
    /** Where a pad of sequence `id` would go; undefined: none can (a stepping sequence, or no room). */
    const padAt = (id: number) => {
      if (id < 0 || id >= total || stepping.has(id)) return undefined;
      const position = binding.getSequenceKvCacheMaxPosition(id) + 1;
      return position < this.#contextSize ? position : undefined;
    };
    const pads = new Map<number, number>();
    for (let i = 1; i < batch.length; i++) {
      for (let id = batch[i - 1]!.id + 1; id < batch[i]!.id; id++) {
        const position = padAt(id);
        if (position !== undefined) pads.set(id, position);
      }
    }
    // A deterministic token with no neighbour in the step gets one: the emptier of the two (a pad
    // attends to its own sequence's cells). Where a micro-batch of one output row differs too
    // (#loneDiffers), one with no other row that asks for logits in its micro-batch (the
    // consecutive ids around it: a prompt's first token asks for none) gets a pad at an end of them.
    const beside = (id: number) => stepping.has(id) || pads.has(id);
    const byId = new Map(batch.map((pending) => [pending.id, pending]));
    const extra = new Set<number>();
    const outputs = (id: number) => pads.has(id) || extra.has(id) || byId.get(id)!.wanted(byId.get(id)!.chunk.from);
    for (const pending of batch) {
      if (!pending.alone || pending.chunk.to - pending.chunk.from !== 1 || !this.#padsLone(pending.chunk.at)) continue;
      let low = pending.id;
      let high = pending.id;
      let others = 0;
      for (; beside(low - 1); low--) others += outputs(low - 1) ? 1 : 0;
      for (; beside(high + 1); high++) others += outputs(high + 1) ? 1 : 0;
      if (this.#loneDiffers ? others > 0 : high > low) continue;
      const options = [high + 1, low - 1].flatMap((id) => {
        const position = padAt(id);
        return position === undefined ? [] : [[id, position] as const];
      });
      const [best] = options.sort((a, b) => a[1] - b[1]);
      if (best) pads.set(best[0], best[1]);
      // No room for one (its neighbours are other sequences' prompts up to both ends, or full): the
      // first row of a neighbouring prompt in its micro-batch asks for logits instead.
      else if (this.#loneDiffers && high > low) extra.add(high > pending.id ? pending.id + 1 : pending.id - 1);
    }
    if (pads.size === 0 && extra.size === 0) return NO_PADS;
    const ids = [...pads.keys()].sort((a, b) => a - b).slice(0, most);
    return { ids: Int32Array.from(ids), positions: Int32Array.from(ids, (id) => pads.get(id)!), ...(extra.size > 0 && { outputs: extra }) };
  }

  /** A pad's cell stayed in its sequence: no pads from now on, and no deterministic token in a batch (it would need them). */
  #padsFailed(): void {
    this.#padded = false;
    this.#batchShapesAgree = false;
    this.#loneDiffers = false;
  }

  /** Whether a lone deterministic token at `position` needs a pad (#lonePadFrom). */
  #padsLone(position: number): boolean {
    return position >= this.#lonePadFrom(this.#currentThreads);
  }

  /**
   * From which position on a lone deterministic token needs a pad on `threads` threads: every one
   * where a one-row micro-batch differs (#loneDiffers), else flash attention's split-KV path from
   * LONE_PAD_FROM on (none: Infinity).
   */
  #lonePadFrom(threads: number): number {
    return this.#loneDiffers ? 0 : this.#splitsLone(threads) ? LONE_PAD_FROM : Infinity;
  }

  /** Whether on `threads` threads flash attention would split a long lone token's cells among them. */
  #splitsLone(threads: number): boolean {
    return threads > 1 && this.#context.flashAttention !== false;
  }

  /**
   * Where a run of these lanes with these pads, on `threads` threads (the run's), would need a pad it
   * lacks: a lone deterministic generation's from #lonePadFrom on; Infinity: nowhere.
   */
  #unpaddedFrom(lanes: Pending[], pads: Pads, threads = this.#currentThreads): number {
    return this.#batchShapesAgree && lanes.length === 1 && lanes[0]!.alone && pads.ids.length === 0 ? this.#lonePadFrom(threads) : Infinity;
  }

  /** The pads' rows out of their sequences' cells again, after a decode; false where one was not (and no pads from then on). */
  #unpad(): boolean {
    const { ids, positions } = this.#pads;
    let removed = true;
    const binding = this.#binding;
    for (let i = 0; i < ids.length; i++) removed = binding.removeTokenCellsFromSequence(ids[i]!, positions[i]!, -1) && removed;
    if (!removed) this.#padsFailed();
    return removed;
  }

  /**
   * Decodes the batch. The samples of ours come with the decode from the native step, in the same
   * worker hop; without it, node-llama-cpp's decodeBatch (and then a sampleToken for each).
   */
  async #decode(batch: Pending[]): Promise<Decoded> {
    const binding = this.#binding;
    try {
      const size = batch.reduce((sum, pending) => sum + pending.chunk.to - pending.chunk.from, 0);
      const sampling = batch.filter((pending) => pending.own && pending.chunk.logits.length > 0);
      const native = this.#nativeFor(sampling);
      let decodeMs: number;
      let sampled: Map<Pending, number | { error: unknown }> | undefined;
      if (native) {
        const { tokens, decodeMs: ms, errors } = await native(this.#raw, sampling.map((pending) => pending.own!.sampler), Int32Array.from(sampling, (pending) => pending.chunk.logits[0]!));
        sampled = new Map(sampling.map((pending, i) => [pending, errors?.[i] !== undefined ? { error: new Error(errors[i]) } : tokens[i]!]));
        decodeMs = ms;
        this.nativeSteps++;
      } else {
        const started = performance.now();
        await binding.decodeBatch();
        decodeMs = performance.now() - started;
      }
      this.#threads?.decoded(this.#currentThreads, size === batch.length, decodeMs);
      return this.#unpad() ? { sampled } : { error: new Error(PAD_NOT_REMOVED) };
    } catch (error) {
      this.#unpad();
      return { error };
    }
  }

  /** The native step, where it may decode (the binding is the one it reads) and sample these. */
  #nativeFor(sampling: Pending[]): EngineAddon['step'] | undefined {
    const binding = this.#binding;
    const raw = binding === this.#raw || (binding as unknown as Record<symbol, unknown>)[WRAPPED_BINDING] === this.#raw;
    return this.#native && raw && sampling.every((pending) => pending.own!.native) ? this.#native : undefined;
  }

  /**
   * The steps after this one, decoded on a thread of the native addon's own one after another
   * without waiting for the main thread (its run), while nothing else waits on the context: every
   * sequence queued is one of ours generating, all of them in this step (one alone, or the batch of
   * the others), and no chat is on. Each step's tokens are handed to the sinks as they come, while
   * the next decodes, as llama-server's loop does not wait for its clients: the main thread's work
   * on a token (detokenizing, stop sequences, the client's stream) and the hop to and from the
   * worker are off the decode's path. The sequences step together, and the run stops by itself as
   * soon as one reaches its sink's limit, the end of generation or the end of the context; a
   * generation that ends otherwise (a stop sequence, an abort, a client gone), new work for the
   * context (`#add`, `chatStarted`), node-llama-cpp wanting the context (`pauseRuns`) or a change of
   * its thread share (`shareChanged`) stops it at its next step, and the tokens decoded past a
   * generation's end are dropped with its cells. A run lasts at most RUN_BUDGET_MS of decoding; then
   * the loop steps as before (and may start another).
   */
  #run(batch: Pending[], outcomes: unknown[]): Promise<void> | undefined {
    const run = this.#nativeRun;
    if (!run || !this.#decodeAhead || this.#runsPaused > 0 || batch.length !== this.#queue.size || this.#chats.size > 0) return undefined;
    const model = this.#context.model;
    for (const [index, pending] of batch.entries()) {
      const token = outcomes[index];
      if (!pending.own || typeof token !== 'number' || token < 0 || pending.own.signal?.aborted || pending.position >= this.#contextSize || pending.own.left <= 1) return undefined;
      // A generation that ends with this token (the end of generation as its first token, often a
      // chat's empty reply) would end the run after one step: the end would wait for that decode.
      if (model.isEogToken(token as Token)) return undefined;
    }
    if (!this.#nativeFor(batch)) return undefined;
    // Not while the thread share times the model's first decodes (on one thread, step by step).
    if (this.#threads && !this.#threads.settled) return undefined;
    // Not for a lone deterministic generation that needs a pad it lacks (its next step has it).
    if (batch[0]!.position >= this.#unpaddedFrom(batch, this.#pads, this.#threads?.share)) return undefined;
    // On several threads too: through the server on 2 cores, one stream on 2 threads made 395 tokens/s
    // with runs against 312 without on the small q8_0 model (medians of 15 alternating streams;
    // 1.58x in another 9) and the same on f16 (103 against 103; 0.93x in another 9), where the one
    // step decoded ahead before runs had gained nothing on 2 threads.
    let guard: { dispose(): void };
    try {
      guard = this.#disposeGuard.createPreventDisposalHandle();
    } catch {
      return undefined; // being disposed: the loop ends the generations at its next step
    }
    return this.#runFrom(batch, outcomes as number[], run, guard, this.#pads);
  }

  /** #run's run of `lanes` (in the batch's order), from the `tokens` the step before sampled; `guard` is released when it ends. */
  async #runFrom(lanes: Pending[], tokens: number[], run: EngineAddon['run'], guard: { dispose(): void }, pads: Pads): Promise<void> {
    const control = new Int32Array(1);
    this.#runControl = control;
    const stop = () => void (control[0] = 1);
    for (const pending of lanes) pending.own!.signal?.addEventListener('abort', stop);
    // Each one's last token sampled: -1 where the run sampled none (it stops there).
    const last = [...tokens];
    const take = (lane: number, sampled: number) => {
      const pending = lanes[lane]!;
      const own = pending.own!;
      if (pending.ending || last[lane]! < 0) return;
      last[lane] = sampled;
      try {
        if (sampled >= 0) this.#next(pending, sampled, true);
      } catch (error) {
        pending.ending = { error }; // (the addon's callback must not throw)
      }
      if (sampled < 0 || pending.ending || own.signal?.aborted) stop();
    };
    const n = lanes.length;
    try {
      let ran: Awaited<ReturnType<EngineAddon['run']>>;
      try {
        this.#useThreadShare(); // (this step's decode may have settled the share)
        let limit = Math.min(...lanes.map((pending) => pending.own!.left - 1));
        // An unpadded lone deterministic run hands back where it would need its pad (the next step has it).
        limit = Math.min(limit, this.#unpaddedFrom(lanes, pads) - lanes[0]!.position);
        const running = run(
          this.#raw,
          lanes.map((pending) => pending.own!.sampler),
          Int32Array.from(lanes, (pending) => pending.id),
          Int32Array.from(lanes, (pending) => pending.position),
          Int32Array.from(tokens),
          limit,
          this.#contextSize,
          this.#runBudgetMs,
          control,
          (sampled) => sampled.forEach((token, index) => take(index % n, token)),
          pads.ids,
          pads.positions,
          this.#loneDiffers,
        );
        this.runs++;
        for (const [lane, token] of tokens.entries()) take(lane, token); // handled while the run decodes them
        ran = await running;
      } catch (error) {
        ran = { decoded: 0, decodeMs: 0, error: error instanceof Error ? error.message : String(error) };
      }
      if (ran.error === PAD_NOT_REMOVED) this.#padsFailed();
      this.nativeSteps += ran.decoded;
      this.aheadSteps += ran.decoded;
      for (const [lane, pending] of lanes.entries()) {
        pending.position += ran.decoded;
        const failed = ran.errors?.[lane] ?? ran.error;
        if (pending.ending || pending.own!.signal?.aborted) this.#finish(pending, pending.ending?.error);
        else if (failed !== undefined || last[lane]! < 0) this.#finish(pending, new Error(failed ?? 'llama.cpp sampled no token'));
        else if (pending.position >= this.#contextSize) this.#finish(pending);
        else continueWith(pending, last[lane]!); // the run stopped: the loop goes on with the last token
      }
    } finally {
      this.#runControl = undefined;
      for (const pending of lanes) pending.own!.signal?.removeEventListener('abort', stop);
      guard.dispose();
    }
  }

  /** The token sampled for one of ours; node-llama-cpp's mapped logits for its decodes. */
  async #afterDecode(pending: Pending): Promise<number | undefined> {
    const { logits, from, to, at } = pending.chunk;
    if (pending.own) return logits.length ? this.#binding.sampleToken(logits[0]!, pending.own.sampler) : undefined;
    const foreign = pending.foreign!;
    let logitIndex = 0;
    for (let index = from; index < to; index++) {
      if (!pending.wanted(index)) continue;
      const position = at + index - from;
      foreign.mapped.push([position, await foreign.mapper(logits[logitIndex++]!, position)]);
    }
    await foreign.afterBatch?.(pending.position + 1);
    return undefined;
  }

  /**
   * One of ours after its step: the sink takes the token, and the generation goes on or ends.
   * `ahead`: its next steps are decoding already (#run); an end waits for them (`ending`).
   */
  #next(pending: Pending, token: number | undefined, ahead = false): void {
    if (token === undefined) return; // its prompt goes on in the next step
    if (token < 0) return this.#finish(pending, new Error('llama.cpp sampled no token'));
    const end = (error?: unknown) => (ahead ? void (pending.ending = { error }) : this.#finish(pending, error));
    let more: boolean;
    pending.own!.left--;
    try {
      more = pending.own!.sink(token as Token);
    } catch (error) {
      return end(error);
    }
    // Room for the token in the context (ahead, the run checks it).
    if (!more || (!ahead && pending.position >= this.#contextSize)) return end();
    if (!ahead) continueWith(pending, token);
  }

  /**
   * Ends a decode (between steps). One of ours has its cells removed from the context; a failed one
   * of node-llama-cpp's has the cells its earlier chunks stored removed, so the sequence holds what
   * node-llama-cpp thinks it holds (it counts a decode's tokens only once all of them are in).
   */
  #finish(pending: Pending, error?: unknown, value?: unknown, disposing = false): void {
    this.#queue.delete(pending);
    this.#alone.delete(pending);
    this.#updateBusy();
    if (pending.foreign) this.#queuedChats.delete(pending.id);
    // A context being disposed keeps its binding untouched: its cells go with it.
    if (!disposing) {
      try {
        if (!pending.foreign) this.#binding.disposeSequence(pending.id);
        else if (error !== undefined) this.#binding.removeTokenCellsFromSequence(pending.id, pending.position - pending.offset, -1);
      } catch (cleanup) {
        error ??= cleanup;
      }
    }
    if (error === undefined) pending.resolve(value as never);
    else pending.reject(error);
  }
}

const EMPTY_CHUNK = { from: 0, to: 0, at: 0, logits: NO_LOGITS };

function sequenceId(sequence: LlamaContextSequence): number {
  const id = (sequence as unknown as { _sequenceId?: number })._sequenceId;
  if (typeof id !== 'number') throw new Error('node-llama-cpp internals changed: a sequence has no _sequenceId');
  return id;
}
const FIRST = (index: number) => index === 0;

/** One of ours goes on: its next decode is the token just sampled. */
function continueWith(pending: Pending, token: number): void {
  pending.tokens = Uint32Array.of(token);
  pending.offset = 0;
  pending.wanted = FIRST;
}
