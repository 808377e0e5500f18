// The engine's own decode loop (decode-loop.ts) and plain-prompt completions on it (completion.ts):
// the same tokens as node-llama-cpp's LlamaCompletion, one decode per step for every generating
// sequence of a context, stop sequences and grammars, and sequences left empty for the next user.
import { readdirSync, readFileSync } from 'node:fs';
import { LlamaChat, LlamaCompletion, type LlamaContext } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from '../../server/src/config.js';
import { openSequences, type EngineSequence } from '../../server/src/engine/contexts.js';
import { complete, promptTokens, TextAssembler, type CompletionOptions } from '../../server/src/engine/completion.js';
import { createSampler, DecodeLoop, useDecodeAhead, usePadCostLimit, WRAPPED_BINDING } from '../../server/src/engine/decode-loop.js';
import { engineAddon, useNativeStep } from '../../server/src/engine/native-addon.js';
import { countDecodeSteps } from '../../test/helpers/decode-steps.js';
import { recordRunLanes } from '../../test/helpers/run-lanes.js';
import { useTinyModel } from '../../test/helpers/demo-llama.js';

const PROMPT = 'Hello world';

async function reference(item: EngineSequence, options: { maxTokens: number; temperature?: number; seed?: number; topK?: number; topP?: number }) {
  await item.sequence.clearHistory();
  const completion = new LlamaCompletion({ contextSequence: item.sequence, autoDisposeSequence: false });
  try {
    return await completion.generateCompletion(PROMPT, options);
  } finally {
    completion.dispose({ disposeSequence: false });
  }
}

async function ours(item: EngineSequence, options: Partial<CompletionOptions> & { maxTokens: number }) {
  await item.sequence.clearHistory();
  const chunks: string[] = [];
  const outcome = await complete(item.loop, item.sequence, { prompt: PROMPT, onText: (text) => chunks.push(text), ...options });
  return { ...outcome, chunks };
}

/** The highest position the sequence holds in the context's memory (-1: empty). */
const lastPosition = (context: LlamaContext, item: EngineSequence) =>
  (context as unknown as { _ctx: { getSequenceKvCacheMaxPosition(id: number): number } })._ctx.getSequenceKvCacheMaxPosition((item.sequence as unknown as { _sequenceId: number })._sequenceId);

describe('decode loop', () => {
  const tiny = useTinyModel();
  // Pads wherever the numbers need them, whatever they cost here (the loops' default weighs that: checkBatchShapes).
  beforeAll(() => usePadCostLimit(Infinity));
  afterAll(() => usePadCostLimit());

  it('generates the text node-llama-cpp generates, greedy and sampled with a seed, and streams all of it', async () => {
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1 });
    const item = sequences[0]!;
    try {
      for (const options of [{ maxTokens: 48 }, { maxTokens: 48, temperature: 0.9, seed: 11 }, { maxTokens: 40, temperature: 1.2, seed: 3, topK: 5, topP: 0.8 }]) {
        const expected = await reference(item, options);
        const got = await ours(item, options);
        expect(got.text).toBe(expected);
        expect(got.chunks.join('')).toBe(got.text);
        expect(got.stopReason).toBe(got.completionTokens === options.maxTokens ? 'maxTokens' : 'eog');
        if (options.temperature === undefined) expect(got.completionTokens).toBe(options.maxTokens); // greedy runs on
        // The BOS, then the text as LlamaCompletion tokenizes it (no leading space added).
        expect(got.promptTokens).toBe(1 + tiny.model.tokenize(PROMPT, false, 'trimLeadingSpace').length);
        expect(lastPosition(contexts[0]!, item)).toBe(-1);
      }
      // The same seed again gives the same text; another seed another.
      const a = await ours(item, { maxTokens: 32, temperature: 1, seed: 5 });
      const b = await ours(item, { maxTokens: 32, temperature: 1, seed: 5 });
      const c = await ours(item, { maxTokens: 32, temperature: 1, seed: 6 });
      expect(b.text).toBe(a.text);
      expect(c.text).not.toBe(a.text);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('ends at a stop sequence, never streaming any of it, and at an abort', async () => {
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1 });
    const item = sequences[0]!;
    try {
      const full = await ours(item, { maxTokens: 64 });
      // A stop sequence from the middle of the greedy text, spanning token boundaries.
      const stop = full.text.slice(20, 27);
      expect(stop.length).toBe(7);
      const stopped = await ours(item, { maxTokens: 64, stop: [stop] });
      expect(stopped.stopReason).toBe('stop');
      expect(stopped.text).toBe(full.text.slice(0, full.text.indexOf(stop)));
      expect(stopped.chunks.join('')).toBe(stopped.text);
      expect(stopped.completionTokens).toBeLessThan(64);
      expect(lastPosition(contexts[0]!, item)).toBe(-1);

      const controller = new AbortController();
      let texts = 0;
      const aborted = await ours(item, {
        maxTokens: 500,
        signal: controller.signal,
        onText: () => {
          if (++texts === 3) controller.abort();
        },
      });
      expect(aborted.stopReason).toBe('abort');
      expect(aborted.completionTokens).toBeLessThan(10);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('produces JSON valid for a schema through the grammar', async () => {
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1 });
    try {
      const grammar = await tiny.llama.createGrammarForJsonSchema({ type: 'object', properties: { name: { type: 'string', maxLength: 8 }, n: { type: 'integer' } }, required: ['name', 'n'] } as const);
      const got = await ours(sequences[0]!, { maxTokens: 200, grammar, temperature: 0.8, seed: 2 });
      // The grammar ends at the end of text, or at its own stop (a run of newlines after the value).
      expect(['eog', 'stop']).toContain(got.stopReason);
      const value = JSON.parse(got.text) as { name: unknown; n: unknown };
      expect(grammar.parse(got.text)).toEqual(value);
      expect(typeof value.name).toBe('string');
      expect(Number.isInteger(value.n)).toBe(true);
      expect(got.text).toBe(got.text.trimEnd());
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it("samples in the decode's own worker hop (the native step) the tokens decodeBatch and a sampleToken each give", async () => {
    const grammar = await tiny.llama.createGrammarForJsonSchema({ type: 'object', properties: { word: { type: 'string', maxLength: 12 } }, required: ['word'] } as const);
    const requests: (Partial<CompletionOptions> & { maxTokens: number })[] = [
      { maxTokens: 40 },
      { maxTokens: 40, temperature: 0.9, seed: 11 },
      { maxTokens: 40, temperature: 1.2, seed: 3, topK: 5, topP: 0.8 },
      { maxTokens: 60, temperature: 0.8, seed: 2, grammar },
    ];
    const runs = [];
    for (const native of [true, false]) {
      useNativeStep(native);
      const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 4, sequences_per_context: 4 });
      useNativeStep(true);
      try {
        // Watches the binding's calls; steps still decode natively through it (WRAPPED_BINDING).
        const calls = { sampleToken: 0, decodeBatch: 0 };
        const internals = contexts[0] as unknown as { _ctx: Record<string | symbol, unknown> };
        internals._ctx = new Proxy(internals._ctx, {
          get: (target, key) => {
            if (key === WRAPPED_BINDING) return target;
            if (key === 'sampleToken' || key === 'decodeBatch') calls[key]++;
            const value = target[key];
            return typeof value === 'function' ? value.bind(target) : value;
          },
        });
        const got = await Promise.all(requests.map((options, i) => ours(sequences[i]!, options)));
        const tokens = got.reduce((sum, outcome) => sum + outcome.completionTokens, 0);
        const loop = sequences[0]!.loop;
        if (native) {
          expect(calls).toEqual({ sampleToken: 0, decodeBatch: 0 });
          expect(loop.nativeSteps).toBeGreaterThanOrEqual(40);
        } else {
          expect(loop.nativeSteps).toBe(0);
          expect(calls.sampleToken).toBeGreaterThanOrEqual(tokens); // and the end of text, sampled but not counted
        }
        runs.push(got.map((outcome) => [outcome.text, outcome.completionTokens, outcome.stopReason]));
        expect(JSON.parse(got[3]!.text)).toHaveProperty('word');
      } finally {
        for (const context of contexts) await context.dispose();
      }
    }
    expect(runs[0]).toEqual(runs[1]);
  });

  it("decodes a lone generation's next steps in a run while its tokens are handed on, and drops the tokens decoded past its end", async () => {
    const grammar = await tiny.llama.createGrammarForJsonSchema({ type: 'object', properties: { word: { type: 'string', maxLength: 12 } }, required: ['word'] } as const);
    const runs = [];
    for (const ahead of [true, false]) {
      useDecodeAhead(ahead, 60_000); // no run hands back on its budget (a step between two runs is not one of a run's)
      const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1 });
      useDecodeAhead(true);
      const item = sequences[0]!;
      try {
        await ours(item, { maxTokens: 8 }); // the thread share times the first decodes step by step
        const before = item.loop.aheadSteps;
        const full = await ours(item, { maxTokens: 48 });
        // A run stops at the sink's limit by itself: a step for each token after the first, none past the last.
        expect(full.stopReason).toBe('maxTokens');
        expect(item.loop.aheadSteps - before).toBe(ahead ? full.completionTokens - 1 : 0);
        const stop = full.text.slice(20, 27);
        const controller = new AbortController();
        let texts = 0;
        const got = [
          full,
          await ours(item, { maxTokens: 48, temperature: 0.9, seed: 11 }),
          await ours(item, { maxTokens: 48, stop: [stop] }),
          await ours(item, { maxTokens: 80, temperature: 0.8, seed: 2, grammar }),
          // An abort from the sink itself: the tokens the run decoded past it are dropped.
          await ours(item, { maxTokens: 500, signal: controller.signal, onText: () => void (++texts === 3 && controller.abort()) }),
          await ours(item, { maxTokens: 1 }),
        ];
        // A sink that throws fails its generation, once its run has stopped.
        let handed = 0;
        await expect(ours(item, { maxTokens: 40, onText: () => { if (++handed === 4) throw new Error('the client went away'); } })).rejects.toThrow('the client went away');
        // Each left the sequence empty, the dropped token's cell too.
        expect(lastPosition(contexts[0]!, item)).toBe(-1);
        expect(got[2]!.stopReason).toBe('stop');
        expect(got[4]!.stopReason).toBe('abort');
        const tokens = got.reduce((sum, outcome) => sum + outcome.completionTokens, 0);
        // Ahead: a step for every token but the first of each (it comes with the prompt), ahead of its handling.
        if (ahead) expect(item.loop.aheadSteps).toBeGreaterThanOrEqual(tokens - got.length);
        else expect(item.loop.aheadSteps).toBe(0);
        runs.push(got.map((outcome) => [outcome.text, outcome.completionTokens, outcome.stopReason, outcome.chunks.join('')]));
      } finally {
        for (const context of contexts) await context.dispose();
      }
      // Up to a full context: as many tokens either way, the last sampled after the last cell.
      useDecodeAhead(ahead);
      const small = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1, context_size: 64 });
      useDecodeAhead(true);
      try {
        const full = await ours(small.sequences[0]!, { maxTokens: 500 });
        expect(full.completionTokens).toBe(small.contexts[0]!.contextSize - full.promptTokens + 1);
        expect(lastPosition(small.contexts[0]!, small.sequences[0]!)).toBe(-1);
        runs.push([full.text]);
      } finally {
        for (const context of small.contexts) await context.dispose();
      }
    }
    expect(runs[0]).toEqual(runs[2]);
    expect(runs[1]).toEqual(runs[3]);
  });

  it('a run of steps on the worker that spends its budget hands back to the loop, which goes on with the same text', async () => {
    const texts = [];
    for (const budget of [0.2, undefined]) {
      useDecodeAhead(budget !== undefined, budget);
      const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1 });
      useDecodeAhead(true);
      const item = sequences[0]!;
      try {
        const got = [await ours(item, { maxTokens: 200 }), await ours(item, { maxTokens: 200, temperature: 0.9, seed: 7 })];
        if (budget !== undefined) expect(item.loop.runs).toBeGreaterThanOrEqual(10);
        else expect(item.loop.runs).toBe(0);
        expect(lastPosition(contexts[0]!, item)).toBe(-1);
        texts.push(got.map((outcome) => [outcome.text, outcome.completionTokens]));
      } finally {
        for (const context of contexts) await context.dispose();
      }
    }
    expect(texts[0]).toEqual(texts[1]);
  });

  it('a generation whose first token is the end of generation starts no run (it would end after one step)', async () => {
    useDecodeAhead(true, 60_000);
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1 });
    useDecodeAhead(true);
    const item = sequences[0]!;
    try {
      // Sampled hot, some seed's first token is the end of generation (the demo model favours it).
      let seed = 0;
      let empty: Awaited<ReturnType<typeof ours>> | undefined;
      for (; seed < 500 && !empty; seed++) {
        const before = item.loop.runs;
        const got = await ours(item, { maxTokens: 16, temperature: 2, seed });
        if (got.completionTokens === 0) {
          empty = got;
          expect(item.loop.runs - before).toBe(0);
        } else if (got.completionTokens > 2) {
          expect(item.loop.runs - before).toBeGreaterThan(0); // the others run as before
        }
      }
      expect(empty).toMatchObject({ text: '', stopReason: 'eog', completionTokens: 0 });
      expect(lastPosition(contexts[0]!, item)).toBe(-1);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('an abort of the signal stops a run at its next step, where the sink would take more, and the sequence is fresh after', async () => {
    useDecodeAhead(true, 60_000);
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1, context_size: 4096 });
    useDecodeAhead(true);
    const item = sequences[0]!;
    try {
      await ours(item, { maxTokens: 8 }); // the thread share times the first decodes step by step
      const controller = new AbortController();
      const steps = item.loop.aheadSteps;
      let taken = 0;
      const sampler = createSampler(tiny.model, { temperature: 0, topK: 40, topP: 0.95, minP: 0, seed: 1 });
      try {
        // A sink that never ends the generation itself, and no limit: only the abort (from outside the
        // sink, a turn after its third token) stops the run, which would go on to the context's end.
        await item.loop.run(item.sequence, promptTokens(tiny.model, PROMPT), sampler, () => {
          if (++taken === 3) setImmediate(() => controller.abort(new Error('the client went away')));
          return true;
        }, { signal: controller.signal });
      } finally {
        sampler.dispose();
      }
      expect(item.loop.aheadSteps - steps).toBeGreaterThan(0); // a run without a limit decodes
      expect(taken).toBeLessThan(200);
      expect(item.loop.aheadSteps - steps).toBeLessThan(200);
      expect(lastPosition(contexts[0]!, item)).toBe(-1);
      expect((await ours(item, { maxTokens: 8 })).completionTokens).toBe(8);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it("a run beside another decodes a little below the process's priority, a run alone at it", async () => {
    // The highest nice value among this process's threads (Linux: /proc/self/task/*/stat, field 19).
    const highestNice = () => Math.max(...readdirSync('/proc/self/task').map((task) => {
      try {
        const stat = readFileSync(`/proc/self/task/${task}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
      } catch {
        return -Infinity; // the thread ended meanwhile
      }
    }));
    const base = highestNice();
    useDecodeAhead(true, 60_000);
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 2, sequences_per_context: 1 });
    useDecodeAhead(true);
    try {
      for (const item of sequences) await ours(item, { maxTokens: 8 }); // the thread share times the first decodes
      const seen = (item: EngineSequence, maxTokens: number, into: number[]) => ours(item, { maxTokens, onText: () => void (into.length < 400 && into.push(highestNice())) });
      const alone: number[] = [];
      await seen(sequences[0]!, 300, alone);
      expect(Math.max(...alone)).toBe(base);
      const together: number[] = [];
      await Promise.all([seen(sequences[0]!, 1500, together), ours(sequences[1]!, { maxTokens: 1500 })]);
      expect(together).toContain(base + 5);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('the native run refuses what is not a context binding and a sampler, and arguments of the wrong kinds', async () => {
    const addon = engineAddon()!;
    const control = new Int32Array(1);
    const one = () => Int32Array.of(0);
    expect(() => addon.run({}, [{}], one(), one(), one(), 1, 16, 50, control, () => {})).toThrow(/not a node-llama-cpp context binding and samplers/);
    expect(() => addon.run({}, [], one(), one(), one(), 1, 16, 50, control, () => {})).toThrow(/not a node-llama-cpp context binding and samplers/);
    expect(() => (addon.run as (...args: unknown[]) => unknown)({}, [{}], one(), one(), one(), 1, 16, 50, new Uint32Array(1), () => {})).toThrow(/run\(contextBinding/);
    expect(() => (addon.run as (...args: unknown[]) => unknown)({}, [{}], 0, 0, 1, 1, 16, 50, control, () => {})).toThrow(/run\(contextBinding/);
    expect(() => (addon.run as (...args: unknown[]) => unknown)({}, {})).toThrow(/run\(contextBinding/);
  });

  it("a native run's pads keep a lone long-context token in a micro-batch of several sequences: its logits a batch's, the pads' cells left as they were; pads that are not the context's other sequences are refused", async () => {
    const addon = engineAddon()!;
    const context = await tiny.model.createContext({ sequences: 4, contextSize: 1024, batchSize: 1024, threads: 2, flashAttention: true });
    try {
      const loop = new DecodeLoop(context);
      const agree = await loop.checkBatchShapes();
      // (Where a micro-batch of one output row differs from a batch's, the loop's pads ask for logits.)
      const padLogits = loop.padsEveryLoneToken;
      const binding = (context as unknown as { _ctx: object })._ctx as {
        initBatch(n: number): void;
        addToBatch(id: number, position: number, tokens: Uint32Array, logits: Uint32Array): Uint32Array;
        decodeBatch(): Promise<void>;
        removeTokenCellsFromSequence(id: number, from: number, to: number): boolean;
        getSequenceKvCacheMaxPosition(id: number): number;
      };
      const prompt = Uint32Array.from(tiny.model.tokenize('Once upon a time '.repeat(40)));
      binding.initBatch(prompt.length);
      binding.addToBatch(1, 0, prompt, new Uint32Array(0));
      await binding.decodeBatch();
      binding.initBatch(3);
      binding.addToBatch(3, 0, prompt.subarray(0, 3), new Uint32Array(0)); // a pad sequence that holds cells
      await binding.decodeBatch();
      const at = prompt.length;
      const token = prompt[1]!;
      const bits = (index: number) => new Uint32Array(addon.logitsAt(binding, index).buffer);
      // The reference: the token beside another sequence's, in one decode.
      binding.initBatch(2);
      binding.addToBatch(0, 0, Uint32Array.of(token), Uint32Array.of(0));
      binding.addToBatch(1, at, Uint32Array.of(token), Uint32Array.of(0));
      await binding.decodeBatch();
      const batched = bits(1);
      binding.removeTokenCellsFromSequence(0, 0, -1);
      binding.removeTokenCellsFromSequence(1, at, -1);
      const sampler = createSampler(tiny.model, { temperature: 0, topK: 40, topP: 1, minP: 0, seed: 1 });
      const runOnce = async (pads?: [Int32Array, Int32Array]) => {
        binding.initBatch(4);
        const args = [binding, [sampler], Int32Array.of(1), Int32Array.of(at), Int32Array.of(token), 1, 1024, 1000, new Int32Array(1), () => {}, ...(pads ? [...pads, padLogits] : [])] as const;
        const ran = await (addon.run as (...args: unknown[]) => ReturnType<typeof addon.run>)(...args);
        expect(ran.decoded).toBe(1);
        const row = pads && pads[0][0]! < 1 ? 1 : 0; // the lane's row: after a pad of a lower id
        const logits = bits(row);
        binding.removeTokenCellsFromSequence(1, at, -1);
        return logits;
      };
      const same = (a: Uint32Array, b: Uint32Array) => a.every((value, i) => value === b[i]);
      expect(same(await runOnce(), batched)).toBe(false); // alone: flash attention's split path
      const padded = [await runOnce([Int32Array.of(2), Int32Array.of(0)]), await runOnce([Int32Array.of(0), Int32Array.of(0)]), await runOnce([Int32Array.of(2, 3), Int32Array.of(0, 3)])];
      // (Where the kernels give a micro-batch of 2 other numbers than one of 3, the loop keeps such tokens apart.)
      if (agree) for (const logits of padded) expect(same(logits, batched)).toBe(true);
      for (const id of [0, 2]) expect(binding.getSequenceKvCacheMaxPosition(id)).toBe(-1);
      expect(binding.getSequenceKvCacheMaxPosition(1)).toBe(at - 1);
      expect(binding.getSequenceKvCacheMaxPosition(3)).toBe(2);
      const refused = (pads: Int32Array[]) =>
        (addon.run as (...args: unknown[]) => unknown)(binding, [sampler], Int32Array.of(1), Int32Array.of(at), Int32Array.of(token), 1, 1024, 1000, new Int32Array(1), () => {}, ...pads);
      expect(() => refused([Int32Array.of(1), Int32Array.of(0)])).toThrow(/pads: ascending ids of the context's other sequences/); // the lane itself
      expect(() => refused([Int32Array.of(3, 2), Int32Array.of(3, 0)])).toThrow(/pads: ascending ids/);
      expect(() => refused([Int32Array.of(4), Int32Array.of(0)])).toThrow(/pads: ascending ids/); // no such sequence
      expect(() => refused([Int32Array.of(2), Int32Array.of(0, 1)])).toThrow(/padIds and padPositions/);
      expect(() => refused([Int32Array.of(2)])).toThrow(/padIds and padPositions/);
      expect(() => refused([Int32Array.of(2), Int32Array.of(0), 1 as never])).toThrow(/padLogits: a boolean/);
      sampler.dispose();
    } finally {
      await context.dispose();
    }
  });

  it('the native step refuses what is not a context binding with a batch, or a logit outside the batch', async () => {
    const addon = engineAddon()!;
    expect(() => addon.step({}, [], new Int32Array(0))).toThrow(/not a node-llama-cpp context binding/);
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1 });
    try {
      const binding = (contexts[0] as unknown as { _ctx: { initBatch(n: number): void } })._ctx;
      binding.initBatch(2);
      const sampler = (tiny.model as unknown as { _llama: { _bindings: { AddonSampler: new (model: unknown) => object } }; _model: unknown });
      const made = new sampler._llama._bindings.AddonSampler(sampler._model);
      expect(() => addon.step(binding, [made], Int32Array.of(5))).toThrow(/outside the batch/);
      expect(() => addon.step(binding, [{}], Int32Array.of(0))).toThrow(/not a sampler/);
      expect(addon.stepUnavailable(binding)).toBeUndefined();
      expect(addon.stepUnavailable({})).toMatch(/not a node-llama-cpp context binding/);
      expect(() => addon.step(binding, [made], new Int32Array(0))).toThrow(/one logit index per sampler/);
      // The context still works.
      expect((await ours(sequences[0]!, { maxTokens: 8 })).completionTokens).toBe(8);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('decodes every generating sequence of a context in one step, and leaves each sequence empty for chat', async () => {
    useDecodeAhead(false); // every step on the loop, where the wrapper sees it (the runs' steps: below)
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 4, sequences_per_context: 4 });
    useDecodeAhead(true);
    try {
      expect(contexts).toHaveLength(1);
      const steps = countDecodeSteps(contexts[0]!);
      const alone = await ours(sequences[0]!, { maxTokens: 32 });
      steps.length = 0;
      for (const item of sequences) await item.sequence.clearHistory();
      const together = await Promise.all(sequences.map((item) => complete(item.loop, item.sequence, { prompt: PROMPT, maxTokens: 32 })));
      // Each the same text as alone: the sequences do not see each other's tokens.
      for (const got of together) expect(got.text).toBe(alone.text);
      // One step for the 4 prompts (10 tokens each: they fit one batch), then 31 steps of 4 tokens.
      expect(steps).toEqual([40, ...Array(31).fill(4)]);
      for (const item of sequences) expect(lastPosition(contexts[0]!, item)).toBe(-1);

      // node-llama-cpp's chat on a sequence the loop used finds it empty, as it left it.
      const chat = new LlamaChat({ contextSequence: sequences[1]!.sequence, autoDisposeSequence: false });
      await sequences[1]!.sequence.clearHistory();
      const reply = await chat.generateResponse([{ type: 'user', text: 'Hi' }, { type: 'model', response: [] }], { maxTokens: 8, temperature: 0 });
      chat.dispose({ disposeSequence: false });
      expect(reply.metadata.stopReason).toBeDefined();
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it("a lone deterministic generation's run in a long context on 2 threads pads its steps with a row of the next sequence, whose cells are left as they were", async () => {
    // (minStepMs 0: the thread share splits the tiny model's decodes too.)
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, threads: 2, parallel: 4, sequences_per_context: 4 }, { minStepMs: 0 });
    try {
      const [first, second] = sequences as [EngineSequence, EngineSequence];
      await ours(first, { maxTokens: 8 }); // the thread share times the first decodes step by step
      const loop = first.loop;
      // 250 tokens: its tokens from position 250 on, where a lone one is padded (LONE_PAD_FROM).
      // Greedy: it runs to its limit here.
      const generate = () => ours(first, { prompt: 'Once upon a time '.repeat(25), maxTokens: 32, temperature: 0, alone: true });
      const empty = await generate();
      // The next sequence holds 5 cells (as a chat between its turns would).
      await second.sequence.evaluateWithoutGeneratingNewTokens(tiny.model.tokenize('Hello world and more'));
      const held = lastPosition(contexts[0]!, second);
      expect(held).toBeGreaterThanOrEqual(3);
      const steps = countDecodeSteps(contexts[0]!);
      const runs = loop.runs;
      const beside = await generate();
      expect(loop.runs).toBeGreaterThan(runs);
      expect(beside.text).toBe(empty.text);
      // After its prompt, its row and the pad in every step the loop fills (a run hands back after
      // its budget, and the loop's next step starts the next run).
      // (Where deterministic tokens keep steps of their own, a run decodes them all unpadded.)
      if (loop.batchShapesAgree) {
        expect(steps.length).toBeGreaterThan(1);
        expect(steps.slice(1).every((n) => n === 2)).toBe(true);
      }
      expect(lastPosition(contexts[0]!, second)).toBe(held);
      expect(lastPosition(contexts[0]!, first)).toBe(-1);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });

  it('the generations of a shared context step together in one run, with the texts of the loop\'s own steps', async () => {
    const lanes = [{ maxTokens: 40 }, { maxTokens: 40, temperature: 0.9, seed: 6 }, { maxTokens: 24 }, { maxTokens: 32, temperature: 0.7, seed: 1 }];
    const runs = [];
    for (const ahead of [true, false]) {
      useDecodeAhead(ahead, 60_000); // no run hands back on its budget
      const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 4, sequences_per_context: 4 });
      useDecodeAhead(true);
      try {
        await ours(sequences[0]!, { maxTokens: 8 }); // the thread share times the first decodes step by step
        const loop = sequences[0]!.loop;
        const before = { ahead: loop.aheadSteps, runs: loop.runs };
        const steps = countDecodeSteps(contexts[0]!);
        // (The sequences are empty: their prompts come in the same turn and share the first step.)
        const got = await Promise.all(lanes.map((options, i) => complete(loop, sequences[i]!.sequence, { prompt: PROMPT, ...options })));
        for (const [i, outcome] of got.entries()) {
          expect(outcome.completionTokens).toBe(lanes[i]!.maxTokens); // (none ends early on this prompt)
          expect(lastPosition(contexts[0]!, sequences[i]!)).toBe(-1);
        }
        if (ahead) {
          // The four prompts in one step, then a run of all four until the first ends (24 tokens:
          // 23 steps after its first), a step of the three left and their run (to 32), then the two.
          // The three left have the ended one's sequence between them: a row of it pads their
          // steps, so that they decode as one micro-batch (#padsFor), not two.
          expect(steps).toEqual([40, 3 + 1, 2]);
          expect(loop.aheadSteps - before.ahead).toBe(23 + 7 + 7);
          expect(loop.runs - before.runs).toBe(3);
        } else {
          expect(steps).toEqual([40, ...Array(23).fill(4), ...Array(8).fill(3 + 1), ...Array(8).fill(2)]);
          expect(loop.runs).toBe(0);
        }
        runs.push(got.map((outcome) => [outcome.text, outcome.completionTokens]));
      } finally {
        for (const context of contexts) await context.dispose();
      }
    }
    // The same batches either way, so the same numbers and texts.
    expect(runs[0]).toEqual(runs[1]);
  });

  it('a shared run stops where one of its generations ends otherwise (a stop sequence, an abort, a sink that throws), the others go on', async () => {
    // Each run's sequences, as the loop hands them to the addon.
    const { lanes, restore } = recordRunLanes();
    useDecodeAhead(true, 60_000);
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 4, sequences_per_context: 4 });
    useDecodeAhead(true);
    try {
      const full = await ours(sequences[0]!, { maxTokens: 64 });
      const stop = full.text.slice(20, 27);
      const controller = new AbortController();
      let texts = 0;
      let handed = 0;
      lanes.length = 0;
      const loop = sequences[0]!.loop;
      const generate = (item: EngineSequence, options: Partial<CompletionOptions> & { maxTokens: number }) => complete(loop, item.sequence, { prompt: PROMPT, ...options });
      // (The sequences are empty: the four prompts come in one turn and share the first step.)
      const [stopped, aborted, thrown, plain] = await Promise.allSettled([
        generate(sequences[0]!, { maxTokens: 200, stop: [stop] }),
        generate(sequences[1]!, { maxTokens: 200, signal: controller.signal, onText: () => void (++texts === 5 && controller.abort()) }),
        generate(sequences[2]!, { maxTokens: 200, onText: () => { if (++handed === 40) throw new Error('the client went away'); } }),
        generate(sequences[3]!, { maxTokens: 90 }),
      ]);
      expect(stopped.status === 'fulfilled' && [stopped.value.stopReason, stopped.value.text]).toEqual(['stop', full.text.slice(0, full.text.indexOf(stop))]);
      expect(aborted.status === 'fulfilled' && aborted.value.stopReason).toBe('abort');
      expect(aborted.status === 'fulfilled' && aborted.value.completionTokens).toBeLessThan(20);
      expect(thrown.status === 'rejected' && (thrown.reason as Error).message).toBe('the client went away');
      expect(plain.status === 'fulfilled' && [plain.value.stopReason, plain.value.completionTokens]).toEqual(['maxTokens', 90]);
      // The runs: all four at first, in ascending sequence order, then fewer as they end, the last alone.
      const ids = sequences.map((item) => (item.sequence as unknown as { _sequenceId: number })._sequenceId).sort((a, b) => a - b);
      expect(lanes[0]).toEqual(ids);
      for (const [i, run] of lanes.entries()) {
        expect(run).toEqual([...run].sort((a, b) => a - b));
        if (i > 0) expect(run.length).toBeLessThanOrEqual(lanes[i - 1]!.length);
      }
      expect(lanes.at(-1)).toEqual([ids.at(-1)]);
      for (const item of sequences) expect(lastPosition(contexts[0]!, item)).toBe(-1);
    } finally {
      restore();
      for (const context of contexts) await context.dispose();
    }
  });

  it('new work for a shared context stops its run at the next step: a prompt that comes is decoded at once; node-llama-cpp gets the context\'s lock after a step', async () => {
    useDecodeAhead(true, 60_000); // only the new work can end the run early
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 4, sequences_per_context: 4, context_size: 4096 });
    useDecodeAhead(true);
    try {
      await ours(sequences[0]!, { maxTokens: 8 }); // the thread share times the first decodes step by step
      const loop = sequences[0]!.loop;
      // Paused, no run starts; once resumed, one does.
      const resume = loop.pauseRuns();
      let runsWhilePaused: number | undefined;
      const runsBefore = loop.runs;
      await complete(loop, sequences[3]!.sequence, { prompt: PROMPT, maxTokens: 60, onText: () => void (runsWhilePaused = loop.runs - runsBefore) });
      expect(runsWhilePaused).toBe(0);
      resume();
      resume(); // (twice is once)
      await complete(loop, sequences[3]!.sequence, { prompt: PROMPT, maxTokens: 60 });
      expect(loop.runs).toBe(runsBefore + 1);

      let first = 0;
      let atLate: number | undefined;
      let atCleared: number | undefined;
      let runsWhileClearing: number | undefined;
      let late: Promise<unknown> | undefined;
      let cleared: Promise<unknown> | undefined;
      const early = complete(loop, sequences[0]!.sequence, {
        prompt: PROMPT,
        maxTokens: 1500,
        onText: () => {
          // A prompt for another sequence of the context, as the engine starts one (no clearing).
          if (++first === 20) late = complete(loop, sequences[1]!.sequence, { prompt: PROMPT, maxTokens: 4, onFirstToken: () => void (atLate ??= first) });
          // node-llama-cpp's own use of the context (clearing a sequence after a chat) takes its
          // lock, which a run holds: the engine pauses the runs around it (engine.ts generateOn).
          if (first === 300) {
            const resumeRuns = loop.pauseRuns();
            const runs = loop.runs;
            cleared = sequences[2]!.sequence.clearHistory().then(() => {
              atCleared = first;
              runsWhileClearing = loop.runs - runs;
              resumeRuns();
            });
          }
        },
      });
      const done = await early;
      await Promise.all([late, cleared]);
      expect(done.completionTokens).toBe(1500);
      // Each came while the early one was far from its end (without the hand-back, only once the
      // run had ended, with the early one, at 1,500).
      expect(atLate).toBeGreaterThanOrEqual(20);
      expect(atLate!).toBeLessThan(200);
      expect(atCleared).toBeGreaterThanOrEqual(300);
      expect(atCleared!).toBeLessThan(500);
      expect(runsWhileClearing).toBe(0);
      expect(loop.runs).toBeGreaterThanOrEqual(runsBefore + 5); // the early one's, the two's, the early one's, and again after the clearing
      for (const item of sequences) expect(lastPosition(contexts[0]!, item)).toBe(-1);
    } finally {
      for (const context of contexts) await context.dispose();
    }
  });
});

describe('text assembler', () => {
  const run = (stops: string[], pieces: string[], trim = false) => {
    const emitted: string[] = [];
    const text = new TextAssembler(stops, trim, (t) => emitted.push(t));
    let stopped = false;
    for (const piece of pieces) if ((stopped = text.add(piece))) break;
    if (!stopped) text.end();
    return { value: text.value, emitted, stopped };
  };

  it('holds back a possible start of a stop sequence until it is decided', () => {
    expect(run(['END'], ['abc E', 'N', 'D more'])).toEqual({ value: 'abc ', emitted: ['abc '], stopped: true });
    expect(run(['END'], ['abc E', 'N', 'x'])).toEqual({ value: 'abc ENx', emitted: ['abc ', 'ENx'], stopped: false });
    // Held at the end of the generation: it was text after all.
    expect(run(['END'], ['abc EN'])).toEqual({ value: 'abc EN', emitted: ['abc ', 'EN'], stopped: false });
    // The earliest of several stops wins.
    expect(run(['yz', 'b'], ['xabyz'])).toEqual({ value: 'xa', emitted: ['xa'], stopped: true });
  });

  it('drops trailing whitespace when asked (JSON grammars), keeping inner whitespace', () => {
    expect(run([], ['{"a": ', '1}', '\n', ' '], true)).toEqual({ value: '{"a": 1}', emitted: ['{"a":', ' 1}'], stopped: false });
  });
});
