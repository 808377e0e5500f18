import type { LlamaContext, LlamaContextOptions, LlamaContextSequence, LlamaModel } from 'node-llama-cpp';
import { DecodeLoop } from './decode-loop.js';

export interface EngineSequence {
  sequence: LlamaContextSequence;
  /** Its context's decode loop: every decode on the context runs in its steps (decode-loop.ts). */
  loop: DecodeLoop;
}

/**
 * The contexts of a loaded model as `[engine]` arranges them: `parallel` sequences in contexts of
 * `sequences_per_context`, each context on `threads` threads (the benchmarks open theirs the same way).
 */
export async function openSequences(
  model: LlamaModel,
  engine: { parallel: number; sequences_per_context: number; context_size: number; batch_size: number; threads: number; flash_attention?: boolean },
): Promise<{ contexts: LlamaContext[]; sequences: EngineSequence[] }> {
  const contexts: LlamaContext[] = [];
  const sequences: EngineSequence[] = [];
  try {
    for (let left = engine.parallel; left > 0; left -= engine.sequences_per_context) {
      const options: LlamaContextOptions = {
        sequences: Math.min(left, engine.sequences_per_context),
        contextSize: engine.context_size, // per sequence
        batchSize: engine.batch_size,
        threads: engine.threads,
        flashAttention: engine.flash_attention ?? false,
      };
      const context = await model.createContext(options);
      contexts.push(context);
      const loop = new DecodeLoop(context);
      for (let i = 0; i < context.totalSequences; i++) sequences.push({ sequence: context.getSequence(), loop });
    }
    return { contexts, sequences };
  } catch (error) {
    for (const context of contexts) await context.dispose();
    throw error;
  }
}
