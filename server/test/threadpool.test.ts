// The persistent ggml threadpool (server/native/threadpool.cc, server/src/engine/threadpool.ts) and
// the engine's threads shared among busy contexts (ThreadShare in decode-loop.ts): pools attach to
// every context, generate the same tokens as one thread, hand a lone stream every thread and
// several streams one each (for a model whose decode is long enough to split: the tiny demo model's
// is not, so most tests here lower that floor), and stop their threads when their context is
// disposed.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { LlamaContext } from 'node-llama-cpp';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from '../../server/src/config.js';
import { complete } from '../../server/src/engine/completion.js';
import { openSequences, type EngineSequence } from '../../server/src/engine/contexts.js';
import { useDecodeAhead } from '../../server/src/engine/decode-loop.js';
import { writeDemoModel } from '../../server/src/engine/demo-model.js';
import { attachThreadpool, threadpoolUnavailable } from '../../server/src/engine/threadpool.js';
import { engineOn, useTinyModel } from '../../test/helpers/demo-llama.js';

// A joined thread can stay listed in /proc for a moment after pthread_join returns (the kernel
// reaps it just after waking the joiner), longer on a loaded machine: the count is polled.
const POLL = { timeout: 2000, interval: 20 };
const threadCount = () => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
const binding = (context: LlamaContext) => (context as unknown as { _ctx: { getThreads(): number } })._ctx;

/** Greedy text of `maxTokens` on `item`, and the thread counts its context decoded on (read at each token). */
async function generate(context: LlamaContext, item: EngineSequence, maxTokens: number) {
  const threads = new Set<number>();
  const outcome = await complete(item.loop, item.sequence, {
    prompt: 'Hello world',
    maxTokens,
    temperature: 0,
    onText: () => void threads.add(binding(context).getThreads()),
  });
  return { text: outcome.text, threads };
}

describe('persistent threadpools', () => {
  const tiny = useTinyModel();

  it('attach to every context, decode the tokens one thread decodes, and stop their threads with their context', async () => {
    const single = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1, threads: 1 });
    expect(single.threadpools).toBe(false); // one thread needs no pool
    const before = threadCount();
    const pooled = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 2, sequences_per_context: 1, threads: 2 }, { minStepMs: 0 });
    try {
      expect(threadpoolUnavailable()).toBeUndefined();
      expect(pooled.threadpools).toBe(true);
      expect(threadCount()).toBe(before + 2); // each pool's second thread (its first is the decode's caller)
      const expected = await generate(single.contexts[0]!, single.sequences[0]!, 64);
      const got = await generate(pooled.contexts[0]!, pooled.sequences[0]!, 64);
      expect(got.threads).toEqual(new Set([1, 2])); // its first decodes are timed on one thread
      expect(got.text).toBe(expected.text);
    } finally {
      for (const context of [...single.contexts, ...pooled.contexts]) await context.dispose();
    }
    await expect.poll(threadCount, POLL).toBe(before);
  });

  it('give a lone stream every thread and two streams on two contexts one each', async () => {
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 2, sequences_per_context: 1, threads: 2 }, { minStepMs: 0 });
    try {
      await generate(contexts[0]!, sequences[0]!, 8); // the first decodes, timed on one thread
      const alone = await generate(contexts[0]!, sequences[0]!, 32);
      expect(alone.threads).toEqual(new Set([2]));
      // Long enough that both run at once for most of their tokens; each starts its first step while
      // the other is already busy.
      const [a, b] = await Promise.all([generate(contexts[0]!, sequences[0]!, 256), generate(contexts[1]!, sequences[1]!, 256)]);
      expect(a.threads.has(1) && b.threads.has(1)).toBe(true);
      expect(a.text).toBe(b.text);
      // Once the other has ended, a stream gets both threads back.
      const after = await generate(contexts[1]!, sequences[1]!, 16);
      expect(after.threads).toEqual(new Set([2]));
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('settle on a shared context that only ever steps its sequences together, and then run them on every thread', async () => {
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 4, sequences_per_context: 4, threads: 2 }, { minStepMs: 0 });
    try {
      // Never one sequence alone: every generation step decodes four tokens.
      const together = () => Promise.all(sequences.map((item) => generate(contexts[0]!, item, 24)));
      const first = await together();
      expect(first.flatMap((got) => [...got.threads])).toContain(2); // timed on one thread, then split
      const loop = sequences[0]!.loop;
      const runs = loop.runs;
      const second = await together();
      for (const got of second) expect(got.threads).toEqual(new Set([2]));
      expect(loop.runs).toBeGreaterThan(runs); // (a run waits for the share to settle)
      expect(second.map((got) => got.text)).toEqual(first.map((got) => got.text));
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('share the threads among the busy contexts of every model the engine has loaded', async () => {
    const busy = new Set<object>();
    const a = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1, threads: 2 }, { minStepMs: 0, busy });
    const b = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1, threads: 2 }, { minStepMs: 0, busy });
    try {
      for (const opened of [a, b]) await generate(opened.contexts[0]!, opened.sequences[0]!, 8); // timed on one thread
      const [first, second] = await Promise.all([generate(a.contexts[0]!, a.sequences[0]!, 256), generate(b.contexts[0]!, b.sequences[0]!, 256)]);
      expect(first.threads.has(1) && second.threads.has(1)).toBe(true);
      expect(busy.size).toBe(0);
      expect((await generate(b.contexts[0]!, b.sequences[0]!, 16)).threads).toEqual(new Set([2]));
    } finally {
      for (const context of [...a.contexts, ...b.contexts]) await context.dispose();
    }
  });

  it("a stream's run hands back when another context gets work and when it ends, so its decodes take the new share", async () => {
    useDecodeAhead(true, 60_000); // only the share's change can end a run early
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 2, sequences_per_context: 1, threads: 2 }, { minStepMs: 0 });
    useDecodeAhead(true);
    try {
      await generate(contexts[0]!, sequences[0]!, 8); // the first decodes, timed on one thread
      const seen: number[] = [];
      let other: Promise<unknown> | undefined;
      const long = complete(sequences[0]!.loop, sequences[0]!.sequence, {
        prompt: 'Hello world',
        maxTokens: 1500,
        temperature: 0,
        onText: () => {
          seen.push(binding(contexts[0]!).getThreads());
          if (seen.length === 50) other = generate(contexts[1]!, sequences[1]!, 64);
        },
      });
      await long;
      await other;
      const runsOf = (threads: number[]) => threads.filter((n, i) => i === 0 || n !== threads[i - 1]);
      // Both threads alone, one beside the other stream, both again once it ended.
      expect(runsOf(seen)).toEqual([2, 1, 2]);
      expect(sequences[0]!.loop.runs).toBeGreaterThanOrEqual(3);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('keeps a model whose decode is too short to split on one thread', async () => {
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1, threads: 2 });
    try {
      expect(binding(contexts[0]!).getThreads()).toBe(1);
      const first = await generate(contexts[0]!, sequences[0]!, 32);
      const later = await generate(contexts[0]!, sequences[0]!, 32);
      expect(first.threads).toEqual(new Set([1]));
      expect(later.threads).toEqual(new Set([1])); // the tiny model decodes in well under a millisecond
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('splits the decodes of a model large enough to gain from it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-pool-small-'));
    await writeDemoModel(path.join(dir, 'small.gguf'), { preset: 'small', fileType: 'q8_0' });
    const small = await tiny.llama.loadModel({ modelPath: path.join(dir, 'small.gguf') });
    const { contexts, sequences } = await openSequences(small, { ...DEFAULT_CONFIG.engine, parallel: 1, threads: 2 });
    try {
      const got = await generate(contexts[0]!, sequences[0]!, 24);
      // A few milliseconds a decode on one thread: after the first ones, both threads.
      expect(got.threads).toEqual(new Set([1, 2]));
      expect(binding(contexts[0]!).getThreads()).toBe(2);
    } finally {
      for (const context of contexts) await context.dispose();
      await small.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('attaches pools when the engine asks for more threads than node-llama-cpp allows a context', async () => {
    // node-llama-cpp caps a context's threads at llama.maxThreads (max(4, cores) on CPU): the
    // engine's share and the pools work with that many, not with more than the contexts have.
    const threads = tiny.llama.maxThreads + 2;
    const { contexts, threadpools } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 2, sequences_per_context: 1, threads }, { minStepMs: 0 });
    try {
      expect(threadpools).toBe(true);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('a context disposed while its loop streams waits for the step in flight: nothing is freed under a decode', async () => {
    // node-llama-cpp's own dispatcher holds the context's dispose guard around each decode; the loop
    // must too, or llama_free (and then the pool's free) runs under a decode on a worker thread.
    for (const delay of [0, 5, 10, 20]) {
      const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 2, sequences_per_context: 1, threads: 2 }, { minStepMs: 0 });
      const runs = sequences.map((item) => complete(item.loop, item.sequence, { prompt: 'Hello world', maxTokens: 400, temperature: 0 }).then(() => 'done', (error: Error) => error.message));
      await new Promise((resolve) => setTimeout(resolve, delay));
      await Promise.all(contexts.map((context) => context.dispose()));
      for (const outcome of await Promise.all(runs)) expect(outcome).toMatch(/^done$|is disposed/); // lifecycle-utils' DisposedError
    }
  });

  it("the engine's models, embeddings included, leave no pool thread behind when unloaded", async () => {
    const engine = engineOn(tiny.dir, { threads: 2, parallel: 2, sequences_per_context: 1 });
    await engine.start();
    try {
      const before = threadCount();
      for (let round = 0; round < 2; round++) {
        const [chat, plain, embedded] = await Promise.all([
          engine.generate({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], maxTokens: 16, temperature: 0 }),
          engine.generate({ model: 'tiny', prompt: 'Hello world', maxTokens: 16, temperature: 0 }),
          engine.embed('tiny', ['Hello world', 'Once upon a time']),
        ]);
        expect(chat.usage.completion_tokens).toBeGreaterThan(0);
        expect(plain.usage.completion_tokens).toBe(16);
        expect(embedded.vectors).toHaveLength(2);
        expect(threadCount()).toBeGreaterThanOrEqual(before + 3); // a pool thread for each of 2 contexts and the embedding one
        expect(await engine.unload('tiny')).toBe(true);
        await expect.poll(threadCount, POLL).toBe(before);
      }
    } finally {
      await engine.close();
    }
  });

  it('is refused for what is not a node-llama-cpp context, which then runs as before', async () => {
    const addon = createRequire(import.meta.url)('../native/build/engine.node') as { attach(...args: unknown[]): number; free(id: number): boolean };
    expect(() => addon.attach({}, 2, 1, 2048, 0)).toThrow(/not a node-llama-cpp context binding/);
    expect(addon.free(123_456)).toBe(false);
    const context = await tiny.model.createContext({ sequences: 1, contextSize: 1024, threads: 2 });
    try {
      // The arguments disagree with the context (it has 1 sequence): refused before anything is touched.
      expect(() => addon.attach((context as unknown as { _ctx: object })._ctx, 2, 4, 1024, 0)).toThrow(/not laid out/);
      expect(attachThreadpool(context, 1)).toBeUndefined();
    } finally {
      await context.dispose();
    }
  });
});
