import type { LlamaContext, LlamaContextSequence, LlamaModel } from 'node-llama-cpp';
import { DecodeLoop } from './decode-loop.js';
import { attachThreadpool, ThreadShare, threadpoolsAvailable, type ContextThreadpool } from './threadpool.js';

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
  return open(model, engine, engine.threads);
}

async function open(model: LlamaModel, engine: Arrangement, threads: number, onOpen?: (context: LlamaContext) => void): Promise<LlamaContext[]> {
  const contexts: LlamaContext[] = [];
  try {
    for (let left = engine.parallel; left > 0; left -= engine.sequences_per_context) {
      contexts.push(
        await model.createContext({
          sequences: Math.min(left, engine.sequences_per_context),
          contextSize: engine.context_size, // per sequence
          batchSize: engine.batch_size,
          threads,
          flashAttention: engine.flash_attention ?? false,
        }),
      );
      onOpen?.(contexts.at(-1)!);
    }
    return contexts;
  } catch (error) {
    for (const context of contexts) await context.dispose();
    throw error;
  }
}

/**
 * The engine's sequences: its contexts, each with its decode loop. `threads` is the engine's in
 * all: each context gets a persistent threadpool of that many (threadpool.ts) and its steps decode
 * on its share of them (`ThreadShare`: `busy` the contexts with work of every model the engine has
 * loaded, shared by them; `minStepMs` its floor, for tests). Without the native addon the
 * threads are split among the contexts once, at least one each.
 */
export async function openSequences(
  model: LlamaModel,
  engine: Arrangement,
  options: { minStepMs?: number; busy?: Set<object> } = {},
): Promise<{ contexts: LlamaContext[]; sequences: EngineSequence[]; threadpools: boolean }> {
  const pools = new Map<LlamaContext, ContextThreadpool>();
  // node-llama-cpp gives a context at most llama.maxThreads (0: no limit): a pool of more threads
  // than its context has would be refused (and the share would ask for threads it lacks).
  const maxThreads = model.llama.maxThreads;
  const threads = maxThreads > 0 ? Math.min(engine.threads, maxThreads) : engine.threads;
  const split = () => Math.max(1, Math.floor(threads / Math.ceil(engine.parallel / engine.sequences_per_context)));
  const wanted = threads > 1 && threadpoolsAvailable();
  let pooled = wanted;
  let contexts = await open(model, engine, wanted ? threads : split(), (context) => {
    const pool = pooled ? attachThreadpool(context, threads) : undefined;
    if (pool) pools.set(context, pool);
    else pooled = false;
  });
  if (wanted && !pooled) {
    // One refused (the first, or a later one): all of them split the threads instead.
    for (const context of contexts) await context.dispose();
    pools.clear();
    contexts = await open(model, engine, split());
  }
  const share = pooled ? new ThreadShare(threads, options.minStepMs, options.busy) : undefined;
  const sequences: EngineSequence[] = [];
  for (const context of contexts) {
    const loop = new DecodeLoop(context, share && { share, pool: pools.get(context)! });
    await loop.checkBatchShapes();
    for (let i = 0; i < context.totalSequences; i++) sequences.push({ sequence: context.getSequence(), loop });
  }
  return { contexts, sequences, threadpools: pooled };
}
