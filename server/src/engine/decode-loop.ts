import { withLock } from 'lifecycle-utils';
import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';

/**
 * One context's decode steps, driven straight on node-llama-cpp's binding, as llama-server's loop
 * drives llama.cpp: each step puts the pending tokens of every sequence generating on the context
 * into one batch (a prompt's tokens, or the token each sampled last), decodes it once on a worker
 * thread, then samples the next token of each.
 *
 * node-llama-cpp's own loop (LlamaCompletion over `sequence.evaluate()`) wraps every token in
 * locks, a batch scheduler, a threads allocator, a stop detector and a stream regulator, all on the
 * main thread between two decodes: on the tiny demo model that JavaScript costs more than the
 * decode itself (bench/token-steps.ts: 0.27 ms of main-thread CPU a token against 0.07 here).
 *
 * It reaches into node-llama-cpp 3.21.1 internals (the context's `_ctx` binding, a sequence's
 * `_sequenceId`, the `AddonSampler` binding); the version is pinned exactly, the constructor throws
 * if they are gone, and server/test/decode-loop.test.ts fails if their behaviour changes.
 * node-llama-cpp's idea of the sequence is left as it was (empty): a sequence's cells are removed
 * when its generation ends, so node-llama-cpp (chat, `clearHistory`) finds it as it left it.
 */

/** The binding calls used (node-llama-cpp's AddonContext). */
interface Binding {
  initBatch(size: number): void;
  addToBatch(sequenceId: number, firstPosition: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
  decodeBatch(): Promise<void>;
  sampleToken(batchLogitIndex: number, sampler: NativeSampler): Promise<number>;
  disposeSequence(sequenceId: number): void;
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

interface Member {
  id: number;
  /** Tokens to decode (the prompt, then the last sampled token) from `offset` on. */
  pending: Uint32Array;
  offset: number;
  /** Where the next token goes in the sequence. */
  position: number;
  sampler: NativeSampler;
  sink: TokenSink;
  /** The batch's logit index of this member's last token, when that is in the step's batch. */
  logit: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

const NO_LOGITS = new Uint32Array(0);

export class DecodeLoop {
  readonly #context: LlamaContext;
  readonly #batchSize: number;
  /** Several sequences share the context: node-llama-cpp may decode on it too (chat), so each step takes its lock. */
  readonly #shared: boolean;
  readonly #members = new Set<Member>();
  #running = false;
  /** Decode steps run and tokens decoded in them (for tests and diagnosis: tokens per step). */
  steps = 0;
  tokens = 0;

  constructor(context: LlamaContext) {
    const binding = (context as unknown as { _ctx?: Partial<Binding> })._ctx;
    for (const name of ['initBatch', 'addToBatch', 'decodeBatch', 'sampleToken', 'disposeSequence'] as const) {
      if (typeof binding?.[name] !== 'function') throw new Error(`node-llama-cpp internals changed: the context binding has no ${name}`);
    }
    this.#context = context;
    this.#batchSize = context.batchSize;
    this.#shared = context.totalSequences > 1;
  }

  /** Sequences generating now. */
  get active(): number {
    return this.#members.size;
  }

  /**
   * Decodes `prompt` on the (empty) sequence, then feeds `sink` each token sampled after it until
   * `sink` returns false; the sequence is empty again when the promise settles.
   */
  run(sequence: LlamaContextSequence, prompt: readonly Token[], sampler: NativeSampler, sink: TokenSink): Promise<void> {
    const id = (sequence as unknown as { _sequenceId?: number })._sequenceId;
    if (typeof id !== 'number') throw new Error('node-llama-cpp internals changed: a sequence has no _sequenceId');
    if (prompt.length === 0) throw new Error('An empty prompt cannot be decoded');
    return new Promise<void>((resolve, reject) => {
      this.#members.add({ id, pending: Uint32Array.from(prompt), offset: 0, position: 0, sampler, sink, logit: -1, resolve, reject });
      if (!this.#running) void this.#loop();
    });
  }

  async #loop(): Promise<void> {
    this.#running = true;
    try {
      await null; // generations started in the same turn share the first step

      while (this.#members.size > 0) {
        if (this.#shared) await withLock([this.#context, 'context'], () => this.#step());
        else await this.#step();
      }
    } finally {
      this.#running = false;
    }
  }

  /** Read at each use, as node-llama-cpp reads it (a test may wrap it to count steps). */
  get #binding(): Binding {
    return (this.#context as unknown as { _ctx: Binding })._ctx;
  }

  async #step(): Promise<void> {
    const binding = this.#binding;
    const batch: Member[] = [];
    let size = 0;
    // Every member's next tokens, up to the batch size (a long prompt continues in the next step).
    for (const member of this.#members) {
      const take = Math.min(member.pending.length - member.offset, this.#batchSize - size);
      if (take <= 0) break;
      batch.push(member);
      size += take;
    }
    binding.initBatch(size);
    let left = size;
    for (const member of batch) {
      const take = Math.min(member.pending.length - member.offset, left);
      left -= take;
      const last = member.offset + take === member.pending.length;
      const tokens = member.pending.subarray(member.offset, member.offset + take);
      const logits = binding.addToBatch(member.id, member.position, tokens, last ? Uint32Array.of(take - 1) : NO_LOGITS);
      member.logit = last ? logits[0]! : -1;
      member.offset += take;
      member.position += take;
    }
    try {
      await binding.decodeBatch();
    } catch (error) {
      for (const member of batch) this.#finish(member, error);
      return;
    }
    this.steps++;
    this.tokens += size;
    const sampled = batch.filter((member) => member.logit >= 0);
    const tokens = await Promise.all(sampled.map((member) => binding.sampleToken(member.logit, member.sampler).catch((error: unknown) => error)));
    for (const [index, member] of sampled.entries()) {
      const token = tokens[index];
      if (typeof token !== 'number' || token < 0) {
        this.#finish(member, token instanceof Error ? token : new Error('llama.cpp sampled no token'));
        continue;
      }
      let more: boolean;
      try {
        more = member.sink(token as Token);
      } catch (error) {
        this.#finish(member, error);
        continue;
      }
      if (!more) {
        this.#finish(member);
        continue;
      }
      member.pending = Uint32Array.of(token);
      member.offset = 0;
    }
  }

  /** Ends a member's generation (between steps): its cells are removed from the context. */
  #finish(member: Member, error?: unknown): void {
    this.#members.delete(member);
    try {
      this.#binding.disposeSequence(member.id);
    } catch (cleanup) {
      error ??= cleanup;
    }
    if (error === undefined) member.resolve();
    else member.reject(error);
  }
}
