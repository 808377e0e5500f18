/**
 * Which arrangement of contexts x sequences x threads serves best on this CPU: raw node-llama-cpp,
 * contexts opened exactly as the engine opens them (server/src/engine/contexts.ts openSequences),
 * 1 and 4 concurrent greedy streams, alternating round by round, medians.
 *
 *   npx tsx bench/arrangements.ts [--model small-f16|small-q8_0|tiny] [--tokens 128] [--rounds 5]
 *                                 [--arrangements 4x1x1,2x2x1,1x4x1,1x4x2,1x4x1-completion,1x4x1-raw,4x1x1-raw]
 *
 * An arrangement CxSxT is C contexts of S sequences on T threads each, generating on the engine's own
 * decode loop (server/src/engine/decode-loop.ts) as the server does for a plain prompt; `-completion`
 * runs node-llama-cpp's LlamaCompletion on the same contexts instead, its decodes in the same loop's
 * steps (as a chat's are), `-raw` LlamaCompletion on contexts of node-llama-cpp's alone (its own
 * dispatcher), `-hops` the engine's loop without the native addon's one-hop step (node-llama-cpp's
 * decodeBatch, then a sampleToken per sequence, each a worker hop), `-noahead` without a lone
 * generation's runs of steps on a thread of their own (each step then waits for the main thread). Printed: tokens/s (aggregate for 4), CPU ms per token of the whole
 * process and of its main thread (the JS around each token), and tokens per decode step (of the
 * steps the loop makes itself: a run's are not counted, NaN where runs made them all).
 */
import path from 'node:path';
import { LlamaCompletion, type LlamaContext, type LlamaModel } from 'node-llama-cpp';
import { DEFAULT_CONFIG } from '../server/src/config.js';
import { openContexts, openSequences, type EngineSequence } from '../server/src/engine/contexts.js';
import { complete } from '../server/src/engine/completion.js';
import { useDecodeAhead } from '../server/src/engine/decode-loop.js';
import { useNativeStep } from '../server/src/engine/native-addon.js';
import { writeDemoModel } from '../server/src/engine/demo-model.js';
import { countDecodeSteps } from '../test/helpers/decode-steps.js';
import { DEMO_MODELS, fmt, machineLine, median, parseFlags, startLlama, table, tempDir } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const MODELS = DEMO_MODELS;
const modelName = flags.get('model') ?? 'small-f16';
const tokens = Number(flags.get('tokens') ?? 128);
const rounds = Number(flags.get('rounds') ?? 5);
const names = (flags.get('arrangements') ?? '4x1x1,2x2x1,1x4x1,1x4x2,1x4x1-completion,1x4x1-raw,4x1x1-raw').split(',');
const log = (line = '') => process.stdout.write(line + '\n');

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const mainMs = () => {
  const u = process.threadCpuUsage();
  return (u.user + u.system) / 1000;
};

async function generate({ sequence, loop }: { sequence: EngineSequence['sequence']; loop?: EngineSequence['loop'] }, completionLoop: boolean): Promise<number> {
  await sequence.clearHistory();
  if (!completionLoop) return (await complete(loop!, sequence, { prompt: 'Hello world', maxTokens: tokens, temperature: 0 })).completionTokens;
  loop?.chatStarted(sequence);
  const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
  let n = 0;
  try {
    await completion.generateCompletion('Hello world', { maxTokens: tokens, temperature: 0, seed: 42, onToken: (t) => (n += t.length) });
  } finally {
    completion.dispose({ disposeSequence: false });
    loop?.chatEnded(sequence);
  }
  return n;
}

/** node-llama-cpp's contexts alone, arranged as openSequences arranges them. */
async function openRaw(model: LlamaModel, engine: typeof DEFAULT_CONFIG.engine): Promise<{ contexts: LlamaContext[]; sequences: { sequence: EngineSequence['sequence'] }[] }> {
  const contexts = await openContexts(model, engine);
  return { contexts, sequences: contexts.flatMap((context) => Array.from({ length: context.totalSequences }, () => ({ sequence: context.getSequence() }))) };
}

const spec = MODELS[modelName];
if (!spec) throw new Error(`unknown model ${modelName}`);
log(`arrangements: demo ${modelName}, ${tokens} greedy tokens per stream, ${rounds} alternating rounds`);
log(machineLine());
const dir = tempDir('inferno-bench-arrangements-');
const llama = await startLlama();
try {
  const file = path.join(dir.dir, `${modelName}.gguf`);
  await writeDemoModel(file, spec);
  const model = await llama.loadModel({ modelPath: file });
  const setups = [];
  for (const name of names) {
    const match = /^(\d+)x(\d+)x(\d+)(-completion|-raw|-hops|-noahead)?$/.exec(name);
    if (!match) throw new Error(`arrangement ${name} is not CxSxT[-completion|-raw|-hops|-noahead]`);
    const [contexts, perContext, threads] = [Number(match[1]), Number(match[2]), Number(match[3])];
    const engine = { ...DEFAULT_CONFIG.engine, parallel: contexts * perContext, sequences_per_context: perContext, threads };
    useNativeStep(match[4] !== '-hops');
    useDecodeAhead(match[4] !== '-noahead');
    const opened = match[4] === '-raw' ? await openRaw(model, engine) : await openSequences(model, engine);
    useNativeStep(true);
    useDecodeAhead(true);
    const steps: number[] = [];
    for (const context of opened.contexts) countDecodeSteps(context, steps);
    setups.push({ name, completion: match[4] === '-completion' || match[4] === '-raw', ...opened, steps, one: [] as number[], four: [] as number[], cpu1: [] as number[], cpu4: [] as number[], main4: [] as number[], perStep: [] as number[] });
  }
  const run = async (sequences: Parameters<typeof generate>[0][], completion: boolean) => {
    const c0 = cpuMs();
    const m0 = mainMs();
    const t0 = performance.now();
    const made = (await Promise.all(sequences.map((item) => generate(item, completion)))).reduce((a, b) => a + b, 0);
    return { tps: (made * 1000) / (performance.now() - t0), cpu: (cpuMs() - c0) / made, main: (mainMs() - m0) / made };
  };
  for (const s of setups) {
    await run(s.sequences.slice(0, 1), s.completion); // warm-up
    await run(s.sequences.slice(0, 4), s.completion);
  }
  for (let r = 0; r < rounds; r++) {
    for (const s of setups) {
      const one = await run(s.sequences.slice(0, 1), s.completion);
      s.one.push(one.tps);
      s.cpu1.push(one.cpu);
      s.steps.length = 0;
      const four = await run(s.sequences.slice(0, 4), s.completion);
      s.four.push(four.tps);
      s.cpu4.push(four.cpu);
      s.main4.push(four.main);
      const single = s.steps.filter((n) => n <= 4);
      s.perStep.push(single.reduce((a, b) => a + b, 0) / single.length);
    }
    log(`  round ${r + 1}/${rounds} (${machineLine().split('load average ')[1]})`);
  }
  log();
  log(table(
    ['contexts x sequences x threads', '1 stream tok/s', 'CPU ms/token', '4 streams tok/s', 'CPU ms/token', 'main thread ms/token', 'tokens/step'],
    setups.map((s) => [s.name, fmt(median(s.one)), fmt(median(s.cpu1), 3), fmt(median(s.four)), fmt(median(s.cpu4), 3), fmt(median(s.main4), 3), fmt(median(s.perStep), 2)]),
  ));
  for (const s of setups) for (const context of s.contexts) await context.dispose();
  await model.dispose();
} finally {
  await llama.dispose();
  dir.remove();
}
log();
log(`done; ${machineLine()}`);
