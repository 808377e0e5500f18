import type { LlamaContext } from 'node-llama-cpp';
import { WRAPPED_BINDING } from '../../server/src/engine/decode-loop.js';

/**
 * Records the size of every decode batch `context` runs (node-llama-cpp 3.21.1's binding starts
 * each with `initBatch(n)`), into `steps`: how many tokens each step decoded together; and, into
 * `sequences` when given, the sequence id of each `addToBatch` of the step, in order (and into
 * `logits`, whether that row asked for logits: a pad's does not, but where the loop pads every lone
 * deterministic token, see decode-loop.ts #padsFor; into `tokens`, how many tokens the row holds:
 * a prompt's, several). It only watches: steps still decode through the native addon's one-hop
 * step (WRAPPED_BINDING).
 */
export function countDecodeSteps(context: LlamaContext, steps: number[] = [], sequences?: number[][], logits?: boolean[][], tokens?: number[][]): number[] {
  const internals = context as unknown as { _ctx: Record<string | symbol, unknown> };
  const native = internals._ctx;
  internals._ctx = new Proxy(native, {
    get: (target, key) => {
      if (key === WRAPPED_BINDING) return target;
      const value = target[key];
      if (key === 'initBatch') return (n: number) => (steps.push(n), sequences?.push([]), logits?.push([]), tokens?.push([]), (value as (n: number) => unknown).call(target, n));
      if (key === 'addToBatch' && sequences)
        return (id: number, ...rest: unknown[]) => {
          sequences.at(-1)!.push(id);
          logits?.at(-1)!.push((rest[2] as Uint32Array).length > 0);
          tokens?.at(-1)!.push((rest[1] as Uint32Array).length);
          return (value as (...args: unknown[]) => unknown).call(target, id, ...rest);
        };
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return steps;
}
