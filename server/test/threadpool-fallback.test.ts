// Contexts whose threadpool is refused (the addon loads, but will not attach to this context) fall
// back to node-llama-cpp's own threads, split among the contexts once, as without the addon: never
// several threads a context with ggml making a pool afresh for every decode.
import type { LlamaContext } from 'node-llama-cpp';
import { describe, expect, it, vi } from 'vitest';
import { DEFAULT_CONFIG } from '../src/config.js';
import { openSequences } from '../src/engine/contexts.js';
import { useTinyModel } from '../../test/helpers/demo-llama.js';

vi.mock('../src/engine/threadpool.js', async (actual) => ({
  ...(await actual<typeof import('../src/engine/threadpool.js')>()),
  threadpoolsAvailable: () => true,
  attachThreadpool: () => undefined,
}));

const threadsOf = (context: LlamaContext) => (context as unknown as { _ctx: { getThreads(): number } })._ctx.getThreads();

describe('threadpools refused', () => {
  const tiny = useTinyModel();

  it('split the threads among the contexts once, even when the first context is the one refused', async () => {
    const { contexts, threadpools } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, threads: 2, parallel: 2, sequences_per_context: 1 });
    try {
      expect(threadpools).toBe(false);
      expect(contexts.map(threadsOf)).toEqual([1, 1]);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });
});
