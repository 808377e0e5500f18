import type { LlamaContext } from 'node-llama-cpp';
import { addonObjects, engineAddon, engineAddonUnavailable } from './native-addon.js';

/**
 * A context's threads: a persistent ggml threadpool for a context of more than one thread
 * (server/native/threadpool.cc, in the engine's native addon), and the share of the engine's
 * threads each step decodes on.
 *
 * node-llama-cpp never attaches one, so ggml starts and joins a threadpool on every decode, from
 * whichever libuv worker runs it; on 2 cores that made 2 threads 2-3x slower than 1, and an attached
 * pool makes them about 1.4x faster than 1 (bench/threads.ts). The addon is built at install
 * (scripts/build-native.mjs); without it, contexts run as node-llama-cpp leaves them.
 */

/** A context's pool. */
export interface ContextThreadpool {
  /**
   * Attaches it (for decodes on more than one thread) or detaches it: a decode on one thread with a
   * pool attached still wakes the pool's idle threads, which cost the tiny demo model a third of
   * its tokens/s. Between decodes only; nothing once the context is being disposed.
   */
  use(attached: boolean): void;
}

/**
 * ggml's polling level for the pool's idle threads: 0 puts them to sleep at once. Spinning (ggml's
 * default, 50) measured slower on 2 cores (197 against 209 tok/s on one stream), and a context
 * decoding on one thread of its two would keep the other spinning through every step.
 */
const POLL = 0;

/** Why the addon refused a context, if it did. */
let refused: string | undefined;

/** Whether the addon is built and loads. */
export function threadpoolsAvailable(): boolean {
  return engineAddon() !== undefined;
}

/** Why contexts of several threads run without a persistent pool, once one was asked for and could not be had. */
export function threadpoolUnavailable(): string | undefined {
  return refused ?? engineAddonUnavailable();
}

/**
 * Attaches a pool of `threads` threads to `context`, freed once the context is disposed. Undefined
 * when the addon is missing or refuses the context (the context then works as before, only slower).
 */
export function attachThreadpool(context: LlamaContext, threads: number): ContextThreadpool | undefined {
  if (threads < 2) return undefined;
  const native = engineAddon();
  const objects = addonObjects(context);
  const aggregator = (context as unknown as { _disposeAggregator?: { add(item: () => void): void } })._disposeAggregator;
  if (!native || !objects || typeof aggregator?.add !== 'function') return undefined;
  let id: number;
  try {
    id = native.attach(objects.binding, threads, context.totalSequences, context.contextSize * context.totalSequences, POLL);
  } catch (error) {
    refused = `the native threadpool addon refused the context: ${(error as Error).message}`;
    return undefined;
  }
  let live = true;
  // onDispose fires before node-llama-cpp frees the llama.cpp context; the pool is freed after it
  // (added last to the context's disposal, which runs in order).
  context.onDispose.createListener(() => (live = false));
  aggregator.add(() => void native.free(id));
  return { use: (attached) => void (live && native.use(id, attached)) };
}

/**
 * The decode threads the engine's contexts share: each step of a context (decode-loop.ts) decodes
 * on its share of them, the total divided among the contexts with work, at least one each. One
 * stream alone gets every thread, and four streams on four contexts one each, where more threads
 * per context would only make the contexts' threads take turns on the cores.
 *
 * Only for a model whose decode is long enough to split: ggml synchronises its threads after each
 * of the graph's operations, which on the tiny demo model (a 0.13 ms decode) made 2 threads 0.25 to
 * 0.9x as fast as 1, while the small ones (7 to 11 ms) gained 1.2 to 1.5x. The first generation
 * steps run on one thread and are timed; below `minStepMs` the model stays on one thread.
 */
export class ThreadShare {
  readonly #probes: number[] = [];
  /** Undefined while the first decodes are timed. */
  #splits?: boolean;
  readonly #busy: Set<object>;

  /** `busy`: the contexts with work, shared with the other models' shares (they take the same cores). */
  constructor(
    readonly total: number,
    readonly minStepMs = 1,
    busy = new Set<object>(),
  ) {
    this.#busy = busy;
  }

  /** `loop` has work; the others busy hear that their share may have changed (`shareChanged`). */
  enter(loop: object): void {
    if (this.#busy.has(loop)) return;
    this.#busy.add(loop);
    this.#changed(loop);
  }

  leave(loop: object): void {
    if (this.#busy.delete(loop)) this.#changed(loop);
  }

  #changed(except: object): void {
    for (const other of this.#busy) if (other !== except) (other as { shareChanged?: () => void }).shareChanged?.();
  }

  /** Whether the first decodes have been timed (until then every share is one thread). */
  get settled(): boolean {
    return this.#splits !== undefined;
  }

  /** Threads for a step of a context that has work now. */
  get share(): number {
    return this.#splits ? Math.max(1, Math.floor(this.total / Math.max(1, this.#busy.size))) : 1;
  }

  /**
   * A decode took `ms` on `threads` threads; `generation`: a step of generating sequences only (a
   * token each, one sequence or several: a context that only ever sees them together must settle
   * too), not a prompt's chunk.
   */
  decoded(threads: number, generation: boolean, ms: number): void {
    if (this.#splits !== undefined || threads !== 1 || !generation) return;
    this.#probes.push(ms);
    if (this.#probes.length < PROBES) return;
    this.#probes.sort((a, b) => a - b);
    this.#splits = this.#probes[PROBES >> 1]! >= this.minStepMs;
  }
}
const PROBES = 5;
