import type { LlamaContext, LlamaContextSequence, LlamaModel } from 'node-llama-cpp';
import { DecodeLoop } from './decode-loop.js';

export interface EngineSequence {
  sequence: LlamaContextSequence;
  /** Its context's decode loop: every decode on the context runs in its steps (decode-loop.ts). */
  loop: DecodeLoop;
}

type Arrangement = { parallel: number; sequences_per_context: number; context_size: number; batch_size: number; threads: number; flash_attention?: boolean };

/**
 * The contexts of a loaded model as `[engine]` arranges them: `parallel` sequences in contexts of
 * `sequences_per_context`, each context on `threads` threads. Alone (no decode loop) they are
 * node-llama-cpp's own, as the benchmarks' raw baseline opens them.
 */
export async function openContexts(model: LlamaModel, engine: Arrangement): Promise<LlamaContext[]> {
  const contexts: LlamaContext[] = [];
  try {
    for (let left = engine.parallel; left > 0; left -= engine.sequences_per_context) {
      contexts.push(
        await model.createContext({
          sequences: Math.min(left, engine.sequences_per_context),
          contextSize: engine.context_size, // per sequence
          batchSize: engine.batch_size,
          threads: engine.threads,
          flashAttention: engine.flash_attention ?? false,
        }),
      );
    }
    return contexts;
  } catch (error) {
    for (const context of contexts) await context.dispose();
    throw error;
  }
}

/** The engine's sequences: its contexts, each with its decode loop. */
export async function openSequences(model: LlamaModel, engine: Arrangement): Promise<{ contexts: LlamaContext[]; sequences: EngineSequence[] }> {
  const contexts = await openContexts(model, engine);
  const sequences: EngineSequence[] = [];
  for (const context of contexts) {
    const loop = new DecodeLoop(context);
    for (let i = 0; i < context.totalSequences; i++) sequences.push({ sequence: context.getSequence(), loop });
  }
  return { contexts, sequences };
}
