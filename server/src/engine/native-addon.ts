import { createRequire } from 'node:module';

/**
 * The engine's native addon (server/native/, built at install by scripts/build-native.mjs): a
 * persistent ggml threadpool per context (threadpool.ts) and a decode step that samples its
 * sequences' next tokens on the decode's worker thread (decode-loop.ts). Optional: without it the
 * engine runs as node-llama-cpp alone would, only slower.
 */
export interface EngineAddon {
  attach(binding: unknown, threads: number, sequences: number, contextCells: number, poll: number): number;
  use(id: number, attached: boolean): boolean;
  free(id: number): boolean;
  /** Decodes the batch `binding` holds, then samples `samplers[i]` at batch logit index `logitIndexes[i]`; a token of -1: none. */
  step(binding: object, samplers: readonly object[], logitIndexes: Int32Array): Promise<{ tokens: Int32Array; decodeMs: number; errors?: (string | undefined)[] }>;
  /**
   * Decodes `tokens[i]` at `positions[i]` of sequence `sequenceIds[i]` (ascending) in one batch,
   * samples each one's next with `samplers[i]`, and on from those on a thread of its own, handing
   * each step's tokens (one per sequence, in their order; several steps at once when the main
   * thread was busy) to `onTokens` as they come (which must not throw). The sequences step
   * together; it stops once one of them ends: after `limit` steps, on an end-of-generation token or
   * a token not sampled (-1, handed on too), at `cells`, after `budgetMs` of decoding, on an error
   * (`errors[i]`: sequence i's sampler's), or at the next step once `control[0]` is set. Each step
   * also decodes a row of each sequence of `padIds` (ascending, none of them stepping) at
   * `padPositions[i]` (asking for logits with `padLogits`: each micro-batch then has as many output
   * rows as rows), removed again after the decode. The binding must hold a batch of room for one token
   * per sequence and pad; nothing else may use the context meanwhile.
   */
  run(
    binding: object,
    samplers: readonly object[],
    sequenceIds: Int32Array,
    positions: Int32Array,
    tokens: Int32Array,
    limit: number,
    cells: number,
    budgetMs: number,
    control: Int32Array,
    onTokens: (tokens: Int32Array) => void,
    padIds?: Int32Array,
    padPositions?: Int32Array,
    padLogits?: boolean,
  ): Promise<{ decoded: number; decodeMs: number; error?: string; errors?: (string | undefined)[] }>;
  /** A copy of the logits the last decode left for row `batchIndex` of its batch. Between decodes only. */
  logitsAt(binding: object, batchIndex: number): Float32Array;
  /** Whether the context's memory is a plain KV cache: a sequence's last cells removed leave it as it was (not a recurrent or hybrid model's state). */
  plainCache(binding: object): boolean;
  /** Why `step` cannot run on this binding's node-llama-cpp as loaded (its functions not found); undefined: it can. */
  stepUnavailable(binding: object): string | undefined;
}

const ADDON_PATH = '../../native/build/engine.node';
let addon: EngineAddon | undefined;
let unavailable: string | undefined;

/** The addon, or undefined when it is not built (or does not load). */
export function engineAddon(): EngineAddon | undefined {
  if (addon || unavailable) return addon;
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as EngineAddon;
  } catch (error) {
    unavailable = `the native engine addon is not built (npm run build:native): ${(error as Error).message.split('\n')[0]}`;
  }
  return addon;
}

/**
 * The context's binding and node-llama-cpp's sampler class, where the binding is node-llama-cpp's
 * own AddonContext: the addon reads its fields (and the samplers'), so nothing else may reach it.
 */
export function addonObjects(context: object): { binding: object; AddonSampler?: abstract new (...args: never[]) => object } | undefined {
  const internals = context as { _ctx?: object; _llama?: { _bindings?: { AddonContext?: unknown; AddonSampler?: unknown } } };
  const { AddonContext, AddonSampler } = internals._llama?._bindings ?? {};
  if (typeof AddonContext !== 'function' || !(internals._ctx instanceof AddonContext)) return undefined;
  return { binding: internals._ctx, AddonSampler: typeof AddonSampler === 'function' ? (AddonSampler as abstract new (...args: never[]) => object) : undefined };
}

/** Why the addon is missing, once it was asked for and could not be loaded. */
export function engineAddonUnavailable(): string | undefined {
  return unavailable;
}

let stepWanted = true;
/**
 * Whether decode loops opened from now on use the addon's one-hop step (default: yes, when the
 * addon is built). Off, they decode with node-llama-cpp's decodeBatch and then a sampleToken per
 * sequence: for benchmarks and tests that compare the two.
 */
export function useNativeStep(on: boolean): void {
  stepWanted = on;
}
export function nativeStepWanted(): boolean {
  return stepWanted;
}
