/**
 * Where one token's time goes in node-llama-cpp: the same greedy generation three ways, alternating
 * round by round on one context (1 sequence, 1 thread, as the engine opens it):
 *
 *   completion  LlamaCompletion.generateCompletion (what the engine ran before its own loop)
 *   engine      the engine's own decode loop (server/src/engine/decode-loop.ts, completion.ts): what
 *               a plain prompt runs on now, text assembly and stop handling included
 *   evaluate    the sequence's lower-level evaluate() generator, nothing around it
 *   bare        the binding's own calls in a plain loop (initBatch, addToBatch, decodeBatch,
 *               sampleToken): the floor of the binding, no node-llama-cpp JavaScript
 *   native      the engine's loop as it runs by default: each step one hop of the native addon
 *               (decode and sample together), the next step decoded ahead (untimed phases: `–`)
 *
 * Per token: the decode and the sample as the main thread waits for them (each a round trip to a
 * worker thread), the rest of the wall time, and the CPU time of the main thread.
 *
 *   npx tsx bench/token-steps.ts [--model tiny|small-q8_0|small-f16] [--tokens 128] [--rounds 9]
 *
 * `bare` and the step timings reach into node-llama-cpp internals (`_ctx`, `_sequenceId`, its
 * LlamaSampler); node-llama-cpp is pinned to 3.21.1.
 */
import path from 'node:path';
import { LlamaCompletion, type LlamaContext } from 'node-llama-cpp';
import { complete } from '../server/src/engine/completion.js';
import { DecodeLoop } from '../server/src/engine/decode-loop.js';
import { writeDemoModel } from '../server/src/engine/demo-model.js';
import { DEMO_MODELS, fmt, machineLine, median, parseFlags, startLlama, table, tempDir } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const MODELS = DEMO_MODELS;
const modelName = flags.get('model') ?? 'tiny';
const N = Number(flags.get('tokens') ?? 128);
const rounds = Number(flags.get('rounds') ?? 9);
const spec = MODELS[modelName];
if (!spec) throw new Error(`unknown model ${modelName}`);
const log = (line = '') => process.stdout.write(line + '\n');
const PROMPT = 'Hello world';

type Native = Record<string, (...args: unknown[]) => unknown>;
const mainMs = () => {
  const u = process.threadCpuUsage();
  return (u.user + u.system) / 1000;
};

log(`token-steps: demo ${modelName}, ${N} greedy tokens, ${rounds} alternating rounds`);
log(machineLine());
const dir = tempDir('inferno-bench-steps-');
const llama = await startLlama();
try {
  const file = path.join(dir.dir, `${modelName}.gguf`);
  await writeDemoModel(file, spec);
  const model = await llama.loadModel({ modelPath: file });
  const context = await model.createContext({ sequences: 1, contextSize: 2048, batchSize: 512, threads: 1 });
  const sequence = context.getSequence();
  // Time each decode and sample from the call to its promise settling.
  const spent = { decode: 0, decodes: 0, sample: 0, samples: 0 };
  const timeSteps = (of: LlamaContext): Native => {
    const internals = of as unknown as { _ctx: Native };
    const native = internals._ctx;
    const timed = (name: 'decodeBatch' | 'sampleToken', key: 'decode' | 'sample') => (...args: unknown[]) => {
      const started = performance.now();
      return (native[name]!.apply(native, args) as Promise<unknown>).then((value) => {
        spent[key] += performance.now() - started;
        spent[key === 'decode' ? 'decodes' : 'samples']++;
        return value;
      });
    };
    const wrapped: Native = { decodeBatch: timed('decodeBatch', 'decode'), sampleToken: timed('sampleToken', 'sample') };
    internals._ctx = new Proxy(native, { get: (target, key: string) => wrapped[key] ?? (typeof target[key] === 'function' ? target[key].bind(target) : target[key]) });
    return internals._ctx;
  };
  const binding = timeSteps(context);
  // The engine's loop takes over its context's decodes: a context of its own.
  const engineContext = await model.createContext({ sequences: 1, contextSize: 2048, batchSize: 512, threads: 1 });
  timeSteps(engineContext);
  // The engine's loop above runs on the binding's hops (its binding is wrapped to time them);
  // this one on the native addon's one-hop steps, as the engine runs by default.
  const engineLoop = new DecodeLoop(engineContext);
  const engineSequence = engineContext.getSequence();
  const nativeContext = await model.createContext({ sequences: 1, contextSize: 2048, batchSize: 512, threads: 1 });
  const nativeLoop = new DecodeLoop(nativeContext);
  if (!nativeLoop.native) throw new Error('the native addon is not built (npm run build:native)');
  const nativeSequence = nativeContext.getSequence();
  const { LlamaSampler } = (await import(path.join(path.dirname(import.meta.resolve('node-llama-cpp').replace('file://', '')), 'evaluator/LlamaContext/LlamaSampler.js'))) as {
    LlamaSampler: new (model: unknown) => { applyConfig(config: object): void; _sampler: unknown; asyncDispose(): Promise<void> };
  };

  const variants: Record<string, () => Promise<number>> = {
    async completion() {
      await sequence.clearHistory();
      const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
      let n = 0;
      await completion.generateCompletion(PROMPT, { maxTokens: N, temperature: 0, onToken: (t) => (n += t.length), onTextChunk: () => {} });
      completion.dispose({ disposeSequence: false });
      return n;
    },
    async engine() {
      return (await complete(engineLoop, engineSequence, { prompt: PROMPT, maxTokens: N, temperature: 0, onText: () => {} })).completionTokens;
    },
    async native() {
      return (await complete(nativeLoop, nativeSequence, { prompt: PROMPT, maxTokens: N, temperature: 0, onText: () => {} })).completionTokens;
    },
    async evaluate() {
      await sequence.clearHistory();
      let n = 0;
      for await (const _token of sequence.evaluate(model.tokenize(PROMPT, true), { temperature: 0 })) if (++n >= N) break;
      return n;
    },
    async bare() {
      await sequence.clearHistory();
      const sampler = new LlamaSampler(model);
      sampler.applyConfig({ temperature: 0 });
      const id = (sequence as unknown as { _sequenceId: number })._sequenceId;
      let batch = model.tokenize(PROMPT, true) as number[];
      let position = 0;
      let n = 0;
      while (n < N) {
        binding.initBatch!(batch.length);
        const logits = binding.addToBatch!(id, position, Uint32Array.from(batch), Uint32Array.from([batch.length - 1])) as Uint32Array;
        await binding.decodeBatch!();
        const token = (await binding.sampleToken!(logits[0], sampler._sampler)) as number;
        position += batch.length;
        batch = [token];
        n++;
      }
      binding.disposeSequence!(id);
      await sampler.asyncDispose();
      return n;
    },
  };
  const results = Object.fromEntries(Object.keys(variants).map((k) => [k, { tps: [] as number[], decode: [] as number[], sample: [] as number[], rest: [] as number[], main: [] as number[] }]));
  for (const run of Object.values(variants)) await run(); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const [name, run] of Object.entries(variants)) {
      Object.assign(spent, { decode: 0, decodes: 0, sample: 0, samples: 0 });
      const main0 = mainMs();
      const started = performance.now();
      const n = await run();
      const wall = performance.now() - started;
      const x = results[name]!;
      x.tps.push((n * 1000) / wall);
      x.decode.push(spent.decode / spent.decodes);
      x.sample.push(spent.sample / spent.samples);
      x.rest.push(spent.decodes ? (wall - spent.decode - spent.sample) / n : Number.NaN);
      x.main.push((mainMs() - main0) / n);
    }
  }
  log();
  log(table(
    ['loop', 'tokens/s', 'decode ms (worker round trip)', 'sample ms (worker round trip)', 'rest of wall ms/token', 'main-thread CPU ms/token'],
    Object.entries(results).map(([name, x]) => [name, fmt(median(x.tps)), ...[x.decode, x.sample, x.rest].map((values) => (values.some(Number.isNaN) ? '–' : fmt(median(values), 3))), fmt(median(x.main), 3)]),
  ));
  await context.dispose();
  await engineContext.dispose();
  await model.dispose();
} finally {
  await llama.dispose();
  dir.remove();
}
log();
log(`done; ${machineLine()}`);
