import type { LlamaContext, LlamaContextOptions, LlamaContextSequence, LlamaModel } from 'node-llama-cpp';
import { DecodeLoop } from './decode-loop.js';

/**
 * Full decode steps for a context of several sequences: each step batches the next token of every
 * sequence that is generating, as llama-server's loop does.
 *
 * node-llama-cpp 3.21.1 dispatches a context's batch as soon as the previous one's sampling is done
 * (or one `setImmediate` after the first sequence queues), and the sequence whose sample came back
 * last is always a few promise hops behind: with 4 busy sequences it measured batches of 3 in ~97 %
 * of steps, the 4th decoded alone (bench/arrangements.ts counts tokens per step). Here a step
 * waits until every generating sequence has queued its token, or at most `MAX_WAIT_MS`, so one
 * that is slow to come back (taking a lock for its own cleanup) delays the others a little, never
 * stalls them.
 *
 * This reaches into node-llama-cpp internals (`_decodeTokens`, `_queuedDecodeSequenceIds` and a
 * sequence's after-batch hook); the version is pinned exactly, and
 * server/test/batch-gather.test.ts fails if they change.
 */
const MAX_WAIT_MS = 3;

interface ContextInternals {
  _decodeTokens: (...args: unknown[]) => Promise<unknown>;
  _queuedDecodeSequenceIds: Set<number>;
}
interface SequenceInternals {
  _takeIntervalCheckpointIfNeededAfterBatch: (sequenceStateLength: number) => unknown;
}

export class BatchGather {
  #context?: ContextInternals;
  /** Sequences of the context between `begin` and `end`. */
  #generating = 0;
  #waiters: (() => void)[] = [];
  /** Steps that went ahead after `MAX_WAIT_MS` without every generating sequence (for tests and diagnosis). */
  timeouts = 0;

  /** For `batching.dispatchSchedule`: the first decode of a step waits for the others. */
  readonly schedule = (dispatch: () => void): void => {
    const waiting = this.#wait();
    if (waiting) void waiting.then(dispatch);
    else dispatch();
  };

  attach(context: LlamaContext): void {
    const internals = context as unknown as ContextInternals;
    if (typeof internals._decodeTokens !== 'function' || !(internals._queuedDecodeSequenceIds instanceof Set)) {
      throw new Error('node-llama-cpp internals changed: BatchGather cannot attach');
    }
    this.#context = internals;
    const decode = internals._decodeTokens.bind(context);
    internals._decodeTokens = (...args: unknown[]) => {
      const queued = decode(...args); // queues synchronously
      this.#poke();
      return queued;
    };
  }

  /** A sequence of the context: after each batch, the step waits for the next tokens of the rest. */
  track(sequence: LlamaContextSequence): void {
    const internals = sequence as unknown as SequenceInternals;
    const after = internals._takeIntervalCheckpointIfNeededAfterBatch;
    if (typeof after !== 'function') throw new Error('node-llama-cpp internals changed: BatchGather cannot track a sequence');
    internals._takeIntervalCheckpointIfNeededAfterBatch = (length: number) => {
      const result = after(length);
      const waiting = this.#wait();
      if (!waiting) return result;
      return result instanceof Promise ? result.then(() => waiting) : waiting;
    };
  }

  /** A generation starts on one of the context's sequences (after its history is cleared). */
  begin(): void {
    this.#generating++;
  }

  /** ...and ended: the others need not wait for it. */
  end(): void {
    this.#generating--;
    this.#poke();
  }

  #ready(): boolean {
    return (this.#context?._queuedDecodeSequenceIds.size ?? 0) >= this.#generating;
  }

  #poke(): void {
    if (this.#waiters.length > 0 && this.#ready()) for (const resolve of this.#waiters.splice(0)) resolve();
  }

  #wait(): Promise<void> | undefined {
    if (this.#ready()) return undefined;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        const index = this.#waiters.indexOf(done);
        if (index >= 0) this.#waiters.splice(index, 1);
        this.timeouts++;
        resolve();
      }, MAX_WAIT_MS);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#waiters.push(done);
    });
  }
}

export interface EngineSequence {
  sequence: LlamaContextSequence;
  /** The context's own decode loop (plain-prompt completions run on it). */
  loop: DecodeLoop;
  /** Set on contexts of more than one sequence: `begin`/`end` around each generation. */
  gather?: BatchGather;
}

/**
 * The contexts of a loaded model as `[engine]` arranges them: `parallel` sequences in contexts of
 * `sequences_per_context`, each context on `threads` threads (the benchmarks open theirs the same way).
 */
export async function openSequences(
  model: LlamaModel,
  engine: { parallel: number; sequences_per_context: number; context_size: number; batch_size: number; threads: number },
  /** false: node-llama-cpp's own batching (for the benchmark's comparison). */
  gatherSteps = true,
): Promise<{ contexts: LlamaContext[]; sequences: EngineSequence[] }> {
  const contexts: LlamaContext[] = [];
  const sequences: EngineSequence[] = [];
  try {
    for (let left = engine.parallel; left > 0; left -= engine.sequences_per_context) {
      const size = Math.min(left, engine.sequences_per_context);
      const gather = size > 1 && gatherSteps ? new BatchGather() : undefined;
      const options: LlamaContextOptions = {
        sequences: size,
        contextSize: engine.context_size, // per sequence
        batchSize: engine.batch_size,
        threads: engine.threads,
        ...(gather && { batching: { dispatchSchedule: gather.schedule } }),
      };
      const context = await model.createContext(options);
      contexts.push(context);
      gather?.attach(context);
      const loop = new DecodeLoop(context);
      for (let i = 0; i < context.totalSequences; i++) {
        const sequence = context.getSequence();
        gather?.track(sequence);
        sequences.push({ sequence, loop, gather });
      }
    }
    return { contexts, sequences };
  } catch (error) {
    for (const context of contexts) await context.dispose();
    throw error;
  }
}
