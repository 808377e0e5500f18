// Contexts of several sequences: each decode step batches every generating sequence, node-llama-cpp's
// decodes (a chat, LlamaCompletion) as well as the engine's own (decode-loop.ts), and every engine
// feature still works on such a context.
import { LlamaCompletion, type LlamaContext, type LlamaContextSequence } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from '../../server/src/config.js';
import { openSequences, type EngineSequence } from '../../server/src/engine/contexts.js';
import { complete } from '../../server/src/engine/completion.js';
import { DecodeLoop, useDecodeAhead, usePadCostLimit } from '../../server/src/engine/decode-loop.js';
import { engineAddon } from '../../server/src/engine/native-addon.js';
import type { GenerationRequest } from '../../server/src/engine/engine.js';
import { countDecodeSteps } from '../../test/helpers/decode-steps.js';
import { recordRunLanes } from '../../test/helpers/run-lanes.js';
import { engineOn, useTinyModel } from '../../test/helpers/demo-llama.js';

const TOKENS = 32;
/** 600 tokens on the tiny model: past the 257 cells from which flash attention splits a lone token's cells among the threads. */
const LONG_PROMPT = 'Once upon a time '.repeat(60);

async function generate({ sequence, loop }: EngineSequence, maxTokens = TOKENS): Promise<number> {
  await sequence.clearHistory();
  loop.chatStarted(sequence);
  const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
  let tokens = 0;
  try {
    await completion.generateCompletion('Hello world', { maxTokens, temperature: 0, onToken: (t) => (tokens += t.length) });
  } finally {
    completion.dispose({ disposeSequence: false });
    loop.chatEnded(sequence);
  }
  return tokens;
}

/**
 * Records what each of the engine's own samplers sampled from (node-llama-cpp 3.21.1's binding
 * hands back the candidates' probabilities when asked): per sampler, each sample's token and
 * probabilities, bit for bit.
 */
function recordSamples(context: LlamaContext): Map<object, string[]> {
  const samples = new Map<object, string[]>();
  const internals = context as unknown as { _ctx: Record<string | symbol, unknown> };
  const native = internals._ctx;
  internals._ctx = new Proxy(native, {
    get: (target, key) => {
      const value = target[key];
      if (key !== 'sampleToken') return typeof value === 'function' ? value.bind(target) : value;
      return async (index: number, sampler: object, ...rest: unknown[]) => {
        if (rest.length > 0) return (value as (...args: unknown[]) => unknown).call(target, index, sampler, ...rest);
        const [token, probabilities] = (await (value as (...args: unknown[]) => Promise<[number, number[]]>).call(target, index, sampler, true));
        samples.set(sampler, [...(samples.get(sampler) ?? []), `${token}:${Buffer.from(new Float64Array(probabilities ?? []).buffer).toString('base64')}`]);
        return token;
      };
    },
  });
  return samples;
}

const binding = (context: LlamaContext) => (context as unknown as { _ctx: { getSequenceKvCacheMaxPosition(id: number): number } })._ctx;
const sequenceIdOf = (sequence: LlamaContextSequence) => (sequence as unknown as { _sequenceId: number })._sequenceId;

describe('shared decode steps', () => {
  const tiny = useTinyModel();
  // Pads wherever the numbers need them, whatever they cost here (the loops' default weighs that: checkBatchShapes).
  beforeAll(() => usePadCostLimit(Infinity));
  afterAll(() => usePadCostLimit());
  /**
   * Whether a context of 4 here passes its kernels' check (DecodeLoop.checkBatchShapes), and whether
   * its pads then ask for logits (a micro-batch of one output row differs from a batch's here).
   */
  const kernels = async () => {
    const probe = await tiny.model.createContext({ sequences: 4, contextSize: 256, flashAttention: true });
    try {
      const loop = new DecodeLoop(probe);
      return { agree: await loop.checkBatchShapes(), padLogits: loop.padsEveryLoneToken };
    } finally {
      await probe.dispose();
    }
  };
  const kernelsAgree = async () => (await kernels()).agree;

  it('decodes the next token of all 4 generating sequences in one step', async () => {
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 4, sequences_per_context: 4 });
    try {
      expect(contexts).toHaveLength(1);
      const steps = countDecodeSteps(contexts[0]!);
      for (let round = 0; round < 3; round++) {
        steps.length = 0;
        expect(await Promise.all(sequences.map((item) => generate(item)))).toEqual([TOKENS, TOKENS, TOKENS, TOKENS]);
        // After the prompts, each of the 31 further tokens of the 4 sequences: 31 steps of 4 tokens.
        // node-llama-cpp's own dispatch leaves one sequence behind nearly every step (~42 steps).
        const single = steps.filter((n) => n <= 4);
        expect(single.filter((n) => n === 4).length).toBeGreaterThanOrEqual(TOKENS - 2);
        expect(single.length).toBeLessThanOrEqual(TOKENS + 2);
      }
      expect(sequences[0]!.loop.timeouts).toBe(0);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('a sequence generating alone does not wait for idle ones', async () => {
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 4, sequences_per_context: 4 });
    try {
      const steps = countDecodeSteps(contexts[0]!);
      expect(await generate(sequences[0]!)).toBe(TOKENS);
      expect(steps.filter((n) => n === 1)).toHaveLength(TOKENS - 1);
      expect(sequences[0]!.loop.timeouts).toBe(0); // no step waited for the idle sequences
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('adds the sequences of a step in ascending id order, however their generations were queued, on the loop and in its runs', async () => {
    // With a KV stream per sequence llama.cpp decodes only consecutive, increasing sequence ids in
    // one micro-batch: [3, 1, 2, 0] as given would be three graphs a step instead of one.
    for (const ahead of [false, true]) {
      const { lanes: runs, restore } = recordRunLanes();
      useDecodeAhead(ahead); // off: every step on the loop, where the wrapper sees it
      const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 4, sequences_per_context: 4 });
      useDecodeAhead(true);
      try {
        const steps: number[][] = [];
        countDecodeSteps(contexts[0]!, [], steps);
        const ids = (item: EngineSequence) => (item.sequence as unknown as { _sequenceId: number })._sequenceId;
        const order = [3, 1, 2, 0].map((index) => sequences[index]!);
        await Promise.all(order.map((item) => complete(item.loop, item.sequence, { prompt: 'Hello world', maxTokens: 24, temperature: 0, onText: () => {} })));
        const ascending = sequences.map(ids).sort((a, b) => a - b);
        const full = steps.filter((step) => step.length === 4);
        for (const step of steps) expect(step).toEqual([...step].sort((a, b) => a - b));
        expect(full[0]).toEqual(ascending);
        if (ahead) {
          expect(runs[0]).toEqual(ascending);
          for (const run of runs) expect(run).toEqual([...run].sort((a, b) => a - b));
        } else {
          expect(full.length).toBeGreaterThanOrEqual(20);
          expect(runs).toEqual([]);
        }
      } finally {
        restore();
        for (const context of contexts) await context.dispose();
      }
    }
  });

  it("node-llama-cpp's decodes and the engine's own share each step: neither waits for the other to end", async () => {
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 2, sequences_per_context: 2 });
    try {
      const steps = countDecodeSteps(contexts[0]!);
      const [a, b] = sequences as [EngineSequence, EngineSequence];
      await b.sequence.clearHistory();
      const [viaNodeLlama, own] = await Promise.all([generate(a), complete(b.loop, b.sequence, { prompt: 'Hello world', maxTokens: TOKENS, temperature: 0 })]);
      expect(viaNodeLlama).toBe(TOKENS);
      expect(own.completionTokens).toBe(TOKENS);
      // Both generate in the same steps (2 tokens each), not one after the other (1 each).
      expect(steps.filter((n) => n === 2).length).toBeGreaterThanOrEqual(TOKENS - 3);
      expect(steps.filter((n) => n === 1).length).toBeLessThanOrEqual(3);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it("a generating sequence (the engine's own, and node-llama-cpp's) is in every step while prompts longer than the batch wait", async () => {
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 4, sequences_per_context: 4, batch_size: 64 });
    try {
      const steps: number[][] = [];
      countDecodeSteps(contexts[0]!, [], steps);
      const [g1, g2, p1, p2] = sequences as EngineSequence[];
      const run = (item: EngineSequence, prompt: string, maxTokens: number) => complete(item.loop, item.sequence, { prompt, maxTokens, temperature: 0 });
      // g2's tokens come from node-llama-cpp (as a chat's do), each a new decode queued behind the prompts.
      const generating = [run(g1!, 'Hello world', 200), generate(g2!, 200)];
      await new Promise((resolve) => setTimeout(resolve, 10));
      const long = 'The quick brown fox jumps over the lazy dog. '.repeat(14); // ~150 tokens each, 64 a step
      const prompts = [run(p1!, long, 5), run(p2!, long, 5)];
      await Promise.all([...generating, ...prompts]);
      const [a, b, c] = [g1, g2, p1].map((item) => (item!.sequence as unknown as { _sequenceId: number })._sequenceId);
      const spanOf = (id: number) => [steps.findIndex((step) => step.includes(id)), steps.findLastIndex((step) => step.includes(id))] as const;
      const [from, to] = [Math.max(spanOf(a!)[0], spanOf(b!)[0]) + 1, Math.min(spanOf(a!)[1], spanOf(b!)[1])];
      expect(spanOf(c!)[0]).toBeGreaterThan(from); // the prompts came while both generated
      expect(steps.slice(from, to).filter((step) => !step.includes(a!) || !step.includes(b!))).toEqual([]);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('deterministic requests (a seed, temperature 0) give exactly the text they give alone: their prompts in steps of their own, their next tokens shared where the batch shapes agree (else in steps of their own, taking turns with the batch of the others)', async () => {
    const agree = await kernelsAgree();
    for (const isolate of [true, false]) {
      const engine = engineOn(tiny.dir, { parallel: 4, sequences_per_context: 4, isolate_deterministic: isolate });
      await engine.start();
      try {
        const [context] = (await engine.load('tiny')).contexts;
        const seeded: GenerationRequest = { model: 'tiny', prompt: 'Once upon a time', maxTokens: 48, temperature: 1, seed: 7 };
        const greedyChat: GenerationRequest = { model: 'tiny', messages: [{ role: 'user', content: 'Tell me a story' }], maxTokens: 40, temperature: 0 };
        // Sampled, with no seed (top_k 1 only so that it runs on, as greedy text does here, to its limit).
        const sampled: GenerationRequest = { model: 'tiny', prompt: 'Hello world', maxTokens: 64, temperature: 1, topK: 1 };
        const samples = recordSamples(context!);
        const alone = [await engine.generate(seeded), await engine.generate(greedyChat)];
        const seededAlone = [...samples.values()][0]!;
        samples.clear();
        const steps: number[][] = [];
        const tokens: number[][] = [];
        countDecodeSteps(context!, [], steps, undefined, tokens);
        const [a, b, c, d] = await Promise.all([engine.generate(seeded), engine.generate(greedyChat), engine.generate(sampled), engine.generate(sampled)]);
        const ids = [...new Set(steps.flat())];
        expect(ids).toHaveLength(4);
        const shared = ids.filter((id) => steps.some((step) => step.length > 1 && step.includes(id)));
        if (!isolate) {
          // The switch is what keeps them apart: off, every sequence shares steps.
          expect(shared).toHaveLength(4);
          continue;
        }
        expect([a!.text, b!.text]).toEqual(alone.map((result) => result.text));
        // Not only the text: every probability the seeded request sampled from is the same to the
        // bit as alone (batched, most runs differ somewhere).
        expect([...samples.values()].some((log) => log.length === seededAlone.length && log.every((sample, i) => sample === seededAlone[i]))).toBe(true);
        expect([a!.usage, b!.usage]).toEqual(alone.map((result) => result.usage));
        expect([c!.usage.completion_tokens, d!.usage.completion_tokens]).toEqual([64, 64]);
        if (agree) {
          // The deterministic two: each prompt in a step of its own (the sampled two's share one),
          // then their next tokens in the steps of all four.
          // (A sequence's first row of several tokens is its prompt's: a pad's is one.)
          const ownPrompt = ids.filter((id) => steps.find((step, i) => step.some((row, j) => row === id && tokens[i]![j]! > 1))!.length === 1);
          expect(ownPrompt).toHaveLength(2);
          const together = Math.min(a!.usage.completion_tokens, b!.usage.completion_tokens);
          expect(together).toBeGreaterThanOrEqual(10);
          // (Most of their steps: a chat's next token that comes after the step's wait is in the next one.)
          expect(steps.filter((step) => step.length === 4 && ownPrompt.every((id) => step.includes(id))).length).toBeGreaterThanOrEqual(together / 2);
          continue;
        }
        // Two sequences never shared a step (prompt or token); the two sampled ones batched.
        expect(shared).toHaveLength(2);
        expect(steps.filter((step) => step.length === 2).length).toBeGreaterThanOrEqual(20);
        // Turns: the three (each deterministic sequence, the batch of the sampled two) generate at
        // the same time, none waiting for another to end, and while one generates at most 2 other
        // steps (the other two's) come between two of its own, a few more where a chat's next
        // token was late.
        const units = [...ids.filter((id) => !shared.includes(id)).map((id) => (step: number[]) => step.includes(id)), (step: number[]) => step.length === 2];
        const spans = units.map((inUnit) => {
          const own = steps.flatMap((step, index) => (inUnit(step) ? [index] : []));
          const gaps = own.slice(1).map((index, i) => index - own[i]! - 1);
          expect(Math.max(...gaps)).toBeLessThanOrEqual(4);
          return [own[0]!, own.at(-1)!] as const;
        });
        expect(Math.max(...spans.map(([first]) => first))).toBeLessThan(Math.min(...spans.map(([, last]) => last)));
      } finally {
        await engine.close();
      }
    }
  });

  it("the kernels' check tells whether a micro-batch of one row differs from one of several: where it does, every pad asks for logits, and a lone deterministic token is padded from its first", async () => {
    const context = await tiny.model.createContext({ sequences: 4, contextSize: 256, threads: 1, flashAttention: true });
    try {
      const raw = (context as unknown as { _ctx: object })._ctx as {
        initBatch(n: number): void;
        addToBatch(id: number, position: number, tokens: Uint32Array, logits: Uint32Array): Uint32Array;
        decodeBatch(): Promise<void>;
        disposeSequence(id: number): void;
      };
      const decode = async (rows: [id: number, token: number, logits: boolean][]) => {
        raw.initBatch(rows.length);
        for (const [id, token, logits] of rows) raw.addToBatch(id, 0, Uint32Array.of(token), logits ? Uint32Array.of(0) : new Uint32Array(0));
        await raw.decodeBatch();
        const bits = new Uint32Array(engineAddon()!.logitsAt(raw, 0).buffer);
        for (const [id] of rows) raw.disposeSequence(id);
        return bits;
      };
      const same = (a: Uint32Array, b: Uint32Array) => a.every((bits, i) => bits === b[i]);
      const lone = await decode([[0, 5, true]]);
      const two = await decode([[0, 5, true], [1, 6, true]]);
      useDecodeAhead(false); // every step through the loop's own batch (no run), so that each is seen
      const loop = new DecodeLoop(context);
      useDecodeAhead(true);
      const agree = await loop.checkBatchShapes();
      expect(loop.padsEveryLoneToken).toBe(agree && !same(lone, two));
      if (!agree) return;
      // Greedy and alone, padded from its first token where a lone row differs; the same text either way.
      const samples = recordSamples(context);
      const steps: number[][] = [];
      const logits: boolean[][] = [];
      const tokens: number[][] = [];
      countDecodeSteps(context, [], steps, logits, tokens);
      const sequences = [0, 1, 2, 3].map(() => context.getSequence());
      const greedy = () => complete(loop, sequences[0]!, { prompt: 'Once upon a time', maxTokens: 24, temperature: 0, alone: true });
      const alone = await greedy();
      const aloneSamples = [...samples.values()][0]!;
      const tokenSteps = steps.slice(1);
      expect(tokenSteps.length).toBeGreaterThanOrEqual(1);
      if (loop.padsEveryLoneToken) expect(tokenSteps.every((step, i) => step.length === 2 && logits[i + 1]!.every(Boolean))).toBe(true);
      else expect(tokenSteps.every((step) => step.length === 1)).toBe(true);
      // Beside three prompts that fill every other sequence (no room for a pad at either end of
      // them): where one output row differs, the first row of the prompt beside it asks for logits.
      samples.clear();
      steps.length = logits.length = tokens.length = 0;
      const running = greedy();
      await new Promise((resolve) => setImmediate(resolve));
      const prompt = 'Hello world and more words '.repeat(6);
      const [beside] = await Promise.all([running, ...[1, 2, 3].map((i) => complete(loop, sequences[i]!, { prompt, maxTokens: 2, temperature: 1, topK: 1 }))]);
      expect(beside!.text).toBe(alone.text);
      expect([...samples.values()].some((log) => log.length === aloneSamples.length && log.every((sample, i) => sample === aloneSamples[i]))).toBe(true);
      // (Without the prompt's row asking for logits, this EPYC's samples differed here from the first step beside them.)
    } finally {
      await context.dispose();
    }
    // Where a pad costs too much, such tokens keep steps of their own instead (nothing else changes).
    const { agree, padLogits } = await kernels();
    usePadCostLimit(0);
    const other = await tiny.model.createContext({ sequences: 4, contextSize: 256, threads: 1, flashAttention: true });
    try {
      const loop = new DecodeLoop(other);
      expect([await loop.checkBatchShapes(), loop.padsEveryLoneToken]).toEqual([agree && !padLogits, false]);
    } finally {
      usePadCostLimit(Infinity);
      await other.dispose();
    }
  });

  it("a lone token's numbers in a long context on 2 threads are not a batch's (flash attention splits its cells among the threads), and are once a row of another sequence pads its micro-batch", async () => {
    const context = await tiny.model.createContext({ sequences: 4, contextSize: 2048, batchSize: 1024, threads: 2, flashAttention: true });
    try {
      const binding = (context as unknown as { _ctx: Record<string, (...args: never[]) => unknown> })._ctx as unknown as {
        initBatch(n: number): void;
        addToBatch(id: number, position: number, tokens: Uint32Array, logits: Uint32Array): Uint32Array;
        decodeBatch(): Promise<void>;
        removeTokenCellsFromSequence(id: number, from: number, to: number): boolean;
      };
      const prompt = Uint32Array.from(tiny.model.tokenize(LONG_PROMPT));
      expect(prompt.length).toBeGreaterThan(512);
      const decode = async (rows: [id: number, position: number, token: number, logits: boolean][]) => {
        binding.initBatch(rows.length);
        for (const [id, position, token, logits] of rows) binding.addToBatch(id, position, Uint32Array.of(token), logits ? Uint32Array.of(0) : new Uint32Array(0));
        await binding.decodeBatch();
        const bits = new Uint32Array(engineAddon()!.logitsAt(binding, 0).buffer);
        binding.removeTokenCellsFromSequence(0, prompt.length, -1);
        for (const [id] of rows.slice(1)) binding.removeTokenCellsFromSequence(id, 0, -1);
        return bits;
      };
      binding.initBatch(prompt.length);
      binding.addToBatch(0, 0, prompt, new Uint32Array(0));
      await binding.decodeBatch();
      const token = prompt[0]!;
      const lone = await decode([[0, prompt.length, token, true]]);
      const beside = await decode([[0, prompt.length, token, true], [1, 0, token, true], [2, 0, 7, true]]);
      const { agree, padLogits } = await kernels();
      const padded = await decode([[0, prompt.length, token, true], [1, 0, token, padLogits]]);
      const same = (a: Uint32Array, b: Uint32Array) => a.every((bits, i) => bits === b[i]);
      expect(same(lone, beside)).toBe(false);
      // (Where the kernels themselves give a micro-batch of 2 other numbers than one of 3, no pad could help: the loop then keeps such tokens apart.)
      if (agree) expect(same(padded, beside)).toBe(true);
    } finally {
      await context.dispose();
    }
  });

  it('a deterministic generation samples from the same numbers beside others as alone (long context, 2 threads): its prompt in a step of its own, its next tokens in the shared steps where the batch shapes agree', async () => {
    const context = await tiny.model.createContext({ sequences: 4, contextSize: 2048, batchSize: 512, threads: 2, flashAttention: true });
    try {
      const loop = new DecodeLoop(context); // its own 2 threads, fixed
      const agree = await loop.checkBatchShapes();
      const sequences = [0, 1, 2, 3].map(() => context.getSequence());
      const samples = recordSamples(context);
      const steps: number[][] = [];
      const tokens: number[][] = [];
      countDecodeSteps(context, [], steps, undefined, tokens);
      let seed = 0;
      const deterministic = () => complete(loop, sequences[1]!, { prompt: LONG_PROMPT, maxTokens: 40, temperature: 1, seed, alone: true });
      // Sampled with no seed (top_k 1 so that it runs to its limit).
      const sampled = (sequence: LlamaContextSequence) => complete(loop, sequence, { prompt: 'Hello world', maxTokens: 64, temperature: 1, topK: 1 });
      // A seed whose text runs to its limit (most end early at an end of generation here).
      let alone: Awaited<ReturnType<typeof deterministic>>;
      do {
        seed++;
        samples.clear();
        alone = await deterministic();
      } while (alone.completionTokens < 40 && seed < 50);
      const aloneSamples = [...samples.values()][0]!;
      expect(aloneSamples).toHaveLength(40);
      samples.clear();
      steps.length = 0;
      // Sequences 0, 1 and 3: the one between them pads each shared step (one micro-batch, not two).
      const [beside] = await Promise.all([deterministic(), sampled(sequences[0]!), sampled(sequences[3]!)]);
      expect(beside!.text).toBe(alone.text);
      expect([...samples.values()].some((log) => log.length === aloneSamples.length && log.every((sample, i) => sample === aloneSamples[i]))).toBe(true);
      // Its prompt (rows of several tokens; a row of one of it in the others' steps before it is a pad).
      expect(steps.filter((step, i) => step.some((id, j) => id === 1 && tokens[i]![j]! > 1)).every((step) => step.join() === '1')).toBe(true);
      // Steps where its token joined the others' (those with a row of it as a pad of theirs aside).
      const shared = steps.filter((step) => step.includes(1) && step.includes(0) && step.includes(3));
      if (agree) {
        expect(shared.length).toBeGreaterThanOrEqual(35);
        expect(shared.every((step) => step.join() === '0,1,2,3')).toBe(true);
      }
      for (const sequence of sequences) expect(binding(context).getSequenceKvCacheMaxPosition(sequenceIdOf(sequence))).toBe(-1);
    } finally {
      await context.dispose();
    }
  });

  it("a lone deterministic token's pad is the emptier neighbour that has room (long context, 2 threads)", async () => {
    const context = await tiny.model.createContext({ sequences: 4, contextSize: 512, batchSize: 512, threads: 2, flashAttention: true });
    try {
      const loop = new DecodeLoop(context);
      const agree = await loop.checkBatchShapes();
      const sequences = [0, 1, 2, 3].map(() => context.getSequence());
      const raw = (context as unknown as { _ctx: { initBatch(n: number): void; addToBatch(...args: unknown[]): unknown; decodeBatch(): Promise<void>; disposeSequence(id: number): void } })._ctx;
      const hold = async (id: number, cells: number) => {
        raw.disposeSequence(id);
        raw.initBatch(cells);
        raw.addToBatch(id, 0, Uint32Array.from({ length: cells }, (_, i) => 1 + (i % 100)), new Uint32Array(0));
        await raw.decodeBatch();
      };
      const steps: number[][] = [];
      countDecodeSteps(context, [], steps);
      const padsOfFirstToken = async () => {
        steps.length = 0;
        await complete(loop, sequences[1]!, { prompt: 'Once upon a time '.repeat(25), maxTokens: 4, temperature: 0, alone: true });
        // (steps[0]: its prompt, alone; no other sequence generates. Where deterministic tokens keep
        // steps of their own, a run decodes all of them after it, unpadded.)
        return (steps[1] ?? []).filter((id) => id !== 1);
      };
      await hold(0, 100);
      await hold(2, 5);
      expect(await padsOfFirstToken()).toEqual(agree ? [2] : []);
      await hold(2, 512); // full: no room for a pad
      expect(await padsOfFirstToken()).toEqual(agree ? [0] : []);
      await hold(0, 512);
      expect(await padsOfFirstToken()).toEqual([]); // neither has room (its numbers then are a lone token's)
      for (const [id, cells] of [[0, 512], [2, 512]] as const) expect(binding(context).getSequenceKvCacheMaxPosition(id)).toBe(cells - 1);
      expect(binding(context).getSequenceKvCacheMaxPosition(1)).toBe(-1);
    } finally {
      await context.dispose();
    }
  });

  it('every engine feature works on a context of 4 sequences', async () => {
    // With deterministic requests batched too, as every one of these is.
    const engine = engineOn(tiny.dir, { parallel: 4, sequences_per_context: 4, isolate_deterministic: false });
    await engine.start();
    try {
      const abort = new AbortController();
      const [long, stopped, schema, cancelled, seeded] = await Promise.all([
        engine.generate({ model: 'tiny', prompt: 'Hello world', maxTokens: 64, temperature: 0 }),
        engine.generate({ model: 'tiny', prompt: 'Hello world', maxTokens: 64, temperature: 0, stop: ['e'] }),
        engine.generate({ model: 'tiny', prompt: 'Give JSON', maxTokens: 64, temperature: 0, jsonSchema: { type: 'object', properties: { a: { type: 'boolean' } }, required: ['a'] } }),
        engine.generate({ model: 'tiny', prompt: 'Hello world', maxTokens: 1500, temperature: 0 }, { signal: abort.signal, onText: () => abort.abort() }),
        engine.generate({ model: 'tiny', prompt: 'Once upon a time', maxTokens: 16, temperature: 1, seed: 7 }),
      ]);
      expect(long.finishReason).toBe('length');
      expect(long.usage.completion_tokens).toBe(64);
      expect(stopped.finishReason).toBe('stop');
      expect(stopped.text).not.toContain('e');
      expect(JSON.parse(schema.text)).toEqual({ a: expect.any(Boolean) });
      expect(cancelled.finishReason).toBe('cancelled');
      expect(cancelled.usage.completion_tokens).toBeLessThan(1500);
      expect(seeded.usage.completion_tokens).toBeGreaterThan(0);
      // The same seed gives the same text, on whichever sequence it runs: each alone, since beside
      // others a batch's slightly different numbers change a sampled token now and then.
      const seededRequest = { model: 'tiny', prompt: 'Once upon a time', maxTokens: 16, temperature: 1, seed: 7 };
      const once = await engine.generate(seededRequest);
      const again = await engine.generate(seededRequest); // the pool hands out another sequence
      expect(again.text).toBe(once.text);
      // A chat aborted before its first token ends cancelled, as a plain prompt does (LlamaChat
      // throws there), and its sequence serves the next request.
      for (const input of [{ messages: [{ role: 'user' as const, content: 'Tell me a story' }] }, { prompt: 'Tell me a story' }]) {
        const early = new AbortController();
        setTimeout(() => early.abort(), 0);
        const aborted = await engine.generate({ model: 'tiny', ...input, maxTokens: 500, temperature: 0 }, { signal: early.signal });
        expect(aborted.finishReason).toBe('cancelled');
        expect(aborted.usage.completion_tokens).toBeLessThan(500);
      }
      const after = await engine.generate({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], maxTokens: 8, temperature: 0 });
      expect(after.usage.completion_tokens).toBeGreaterThan(0);
    } finally {
      await engine.close();
    }
  });
});
