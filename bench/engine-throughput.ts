/**
 * Engine throughput: raw node-llama-cpp against the same work through the Inferno server.
 *
 *   npx tsx bench/engine-throughput.ts [--preset tiny|small] [--tokens 128] [--threads 1] [--repeats 9]
 *                                      [--server child|inprocess]
 *                                      [--sweep] [--sweep-only] [--sweep-preset small] [--sweep-repeats 5]
 *
 * (a) raw streaming tokens/s: LlamaCompletion on a context set up like the server's (threads, 4
 *     sequences, batchSize 512), N tokens, greedy (so both sides produce the same N tokens);
 * (b) the same through the server, started as a child process (its event loop is not the client's),
 *     streamed over HTTP (SSE); ratio server/raw;
 * (c) aggregate tokens/s of 4 concurrent streams vs 1 through the server (and raw, for reference);
 * (d) time to first text: server minus raw.
 * Raw and server runs alternate, after a warm-up, and medians are reported.
 * --sweep: raw 4-stream aggregate tokens/s for batchSize, batching.dispatchSchedule,
 * batching.itemPrioritizationStrategy, sequences per context and context size (small preset by default).
 */
import os from 'node:os';
import path from 'node:path';
import type { Llama, LlamaContext, LlamaContextOptions, LlamaContextSequence } from 'node-llama-cpp';
import { DEFAULT_CONFIG } from '../server/src/config.js';
import { writeDemoModel, type DemoPresetName } from '../server/src/engine/demo-model.js';
import { fmt, machineLine, median, parseFlags, rawGenerate, serverStream, startChildServer, startInProcessServer, startLlama, table, tempDir, type GenerationSettings, type RunResult } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const preset = (flags.get('preset') ?? 'tiny') as DemoPresetName;
const tokens = Number(flags.get('tokens') ?? 128);
const threads = Number(flags.get('threads') ?? DEFAULT_CONFIG.engine.threads);
const repeats = Number(flags.get('repeats') ?? 9);
const sweepOnly = flags.has('sweep-only');
const sweep = flags.has('sweep') || sweepOnly;
const sweepPreset = (flags.get('sweep-preset') ?? 'small') as DemoPresetName;
const sweepRepeats = Number(flags.get('sweep-repeats') ?? 5);
const serverMode = flags.get('server') ?? 'child';
if (serverMode !== 'child' && serverMode !== 'inprocess') throw new Error('--server is child or inprocess');
const PARALLEL = DEFAULT_CONFIG.engine.parallel; // 4
const BATCH = DEFAULT_CONFIG.engine.batch_size; // 512
const CONTEXT = DEFAULT_CONFIG.engine.context_size; // 2048 per sequence
/** A context 4 times larger per sequence (what engine.ts passed before 1813e92), for the sweep. */
const BIG_CONTEXT_SIZE = CONTEXT * PARALLEL;

const PROMPTS = ['Hello world', 'The quick brown fox', 'Once upon a time', 'In the beginning'];

const log = (line = '') => process.stdout.write(line + '\n');

async function writeModel(dir: string, which: DemoPresetName): Promise<string> {
  const started = performance.now();
  const file = path.join(dir, `demo-${which}.gguf`);
  const written = await writeDemoModel(file, { preset: which });
  log(`wrote ${which} demo model (${(written.bytes / 1e6).toFixed(1)} MB, ${(written.parameters / 1e6).toFixed(2)}M parameters) in ${fmt((performance.now() - started) / 1000, 1)} s`);
  return file;
}

/** A prompt whose greedy continuation runs the full N tokens (no end-of-turn), so every run does the same work. */
async function findFullLengthPrompt(sequence: LlamaContextSequence, maxTokens: number): Promise<GenerationSettings> {
  for (const prompt of PROMPTS) {
    const settings = { prompt, maxTokens, temperature: 0, seed: 42 };
    if ((await rawGenerate(sequence, settings)).tokens === maxTokens) return settings;
  }
  throw new Error(`no prompt in ${JSON.stringify(PROMPTS)} runs ${maxTokens} greedy tokens without stopping`);
}

/** N concurrent generations, one per sequence; aggregate tokens/s over the wall time of all. */
async function concurrent(run: (i: number) => Promise<RunResult>, n: number): Promise<{ aggregateTps: number; tokens: number; wallMs: number }> {
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: n }, (_, i) => run(i)));
  const wallMs = performance.now() - started;
  const total = results.reduce((sum, r) => sum + r.tokens, 0);
  return { aggregateTps: (total * 1000) / wallMs, tokens: total, wallMs };
}

async function mainComparison(llama: Llama): Promise<void> {
  const models = tempDir('inferno-bench-models-');
  try {
    const file = await writeModel(models.dir, preset);
    const modelId = `demo-${preset}`;
    const model = await llama.loadModel({ modelPath: file });
    // Same settings as the server's context (engine.ts #load).
    const context = await model.createContext({ sequences: PARALLEL, contextSize: CONTEXT, batchSize: BATCH, threads });
    const sequences = Array.from({ length: PARALLEL }, () => context.getSequence());
    const settings = await findFullLengthPrompt(sequences[0]!, tokens);
    log(`raw context: sequences ${PARALLEL}, contextSize ${context.contextSize}/sequence (as engine.ts), batchSize ${context.batchSize}, threads ${threads} (ideal ${context.idealThreads})`);
    log(`generation: ${JSON.stringify(settings)}`);

    const start = serverMode === 'child' ? startChildServer : startInProcessServer;
    const server = await start({ modelsDir: models.dir, settings: { 'engine.threads': threads } });
    log(`server: ${server.where} at ${server.url} (engine.threads ${threads}, parallel ${PARALLEL})`);
    try {
      // Warm-up: load the model in the server, JIT both paths.
      for (let i = 0; i < 3; i++) {
        await rawGenerate(sequences[0]!, settings);
        await serverStream(server, modelId, settings);
      }
      await concurrent((i) => serverStream(server, modelId, settings), PARALLEL);
      await concurrent((i) => rawGenerate(sequences[i]!, settings), PARALLEL);

      const raw: RunResult[] = [];
      const viaServer: RunResult[] = [];
      const server4: number[] = [];
      const raw4: number[] = [];
      for (let i = 0; i < repeats; i++) {
        // Alternate so drifting background load hits both sides alike.
        raw.push(await rawGenerate(sequences[0]!, settings));
        viaServer.push(await serverStream(server, modelId, settings));
        server4.push((await concurrent(() => serverStream(server, modelId, settings), PARALLEL)).aggregateTps);
        raw4.push((await concurrent((j) => rawGenerate(sequences[j]!, settings), PARALLEL)).aggregateTps);
      }
      const same = raw.every((r) => r.text === viaServer[0]!.text) && viaServer.every((r) => r.text === raw[0]!.text);
      const sameCount = raw.every((r) => r.tokens === tokens) && viaServer.every((r) => r.tokens === tokens);
      log(`same text raw vs server: ${same ? 'yes' : 'NO'}; every run ${tokens} tokens: ${sameCount ? 'yes' : 'NO'}`);

      const m = (rs: RunResult[], key: keyof RunResult) => median(rs.map((r) => r[key] as number));
      const best = (rs: RunResult[]) => Math.max(...rs.map((r) => r.e2eTps));
      const pairRatios = raw.map((r, i) => viaServer[i]!.e2eTps / r.e2eTps);
      log();
      log(`(a)/(b) single stream, ${preset}, ${tokens} tokens, threads ${threads}: medians of ${repeats}`);
      log(
        table(
          ['metric', 'raw node-llama-cpp', 'server (HTTP SSE)', 'server/raw'],
          [
            ['end-to-end tokens/s', fmt(m(raw, 'e2eTps')), fmt(m(viaServer, 'e2eTps')), fmt(m(viaServer, 'e2eTps') / m(raw, 'e2eTps'), 3)],
            ['decode tokens/s (after 1st)', fmt(m(raw, 'decodeTps')), fmt(m(viaServer, 'decodeTps')), fmt(m(viaServer, 'decodeTps') / m(raw, 'decodeTps'), 3)],
            ['time to first text (ms)', fmt(m(raw, 'ttftMs'), 2), fmt(m(viaServer, 'ttftMs'), 2), ''],
            ['total (ms)', fmt(m(raw, 'totalMs'), 1), fmt(m(viaServer, 'totalMs'), 1), ''],
            ['best end-to-end tokens/s', fmt(best(raw)), fmt(best(viaServer)), fmt(best(viaServer) / best(raw), 3)],
            ['server-reported tokens/s (done.timings)', '', fmt(median(viaServer.map((r) => r.serverTimings?.tokens_per_second ?? Number.NaN))), ''],
            ['server-reported prompt_ms + queued_ms', '', fmt(median(viaServer.map((r) => (r.serverTimings?.prompt_ms ?? Number.NaN) + (r.serverTimings?.queued_ms ?? 0))), 2), ''],
          ],
        ),
      );
      log(`median of per-pair end-to-end ratios: ${fmt(median(pairRatios), 3)} (target >= 0.95)`);
      log();
      const single = m(viaServer, 'e2eTps');
      log(`(c) aggregate tokens/s, ${PARALLEL} concurrent streams vs 1: medians of ${repeats}`);
      log(
        table(
          ['path', '1 stream', `${PARALLEL} streams`, 'scaling'],
          [
            ['server (median)', fmt(single), fmt(median(server4)), `${fmt(median(server4) / single, 2)}x`],
            ['raw (median)', fmt(m(raw, 'e2eTps')), fmt(median(raw4)), `${fmt(median(raw4) / m(raw, 'e2eTps'), 2)}x`],
            ['server (best)', fmt(best(viaServer)), fmt(Math.max(...server4)), `${fmt(Math.max(...server4) / best(viaServer), 2)}x`],
            ['raw (best)', fmt(best(raw)), fmt(Math.max(...raw4)), `${fmt(Math.max(...raw4) / best(raw), 2)}x`],
          ],
        ),
      );
      log(`server scaling target >= 1.8x`);
      log();
      const ttftDelta = m(viaServer, 'ttftMs') - m(raw, 'ttftMs');
      log(`(d) time to first text, server minus raw: ${fmt(ttftDelta, 2)} ms (median server ${fmt(m(viaServer, 'ttftMs'), 2)} ms - median raw ${fmt(m(raw, 'ttftMs'), 2)} ms; target <= 5 ms)`);
      log(`    best: server ${fmt(Math.min(...viaServer.map((r) => r.ttftMs)), 2)} ms, raw ${fmt(Math.min(...raw.map((r) => r.ttftMs)), 2)} ms`);
      const deltas = raw.map((r, i) => viaServer[i]!.ttftMs - r.ttftMs);
      log(`    per-pair deltas (ms): ${deltas.map((d) => fmt(d, 2)).join(', ')}`);
    } finally {
      await server.stop();
      await context.dispose();
      await model.dispose();
    }
  } finally {
    models.remove();
  }
}

interface SweepCase {
  name: string;
  sequencesPerContext: number;
  options: Partial<LlamaContextOptions>;
}

async function runSweep(llama: Llama): Promise<void> {
  const models = tempDir('inferno-bench-sweep-');
  try {
    const file = await writeModel(models.dir, sweepPreset);
    const model = await llama.loadModel({ modelPath: file });
    const streams = 4;
    const nextTick = (dispatch: () => void) => process.nextTick(dispatch);
    const base = { batchSize: BATCH, threads, contextSize: CONTEXT };
    const cases: SweepCase[] = [
      { name: 'baseline: 4 seq/ctx, batch 512, nextCycle, maximumParallelism, ctx 2048/seq', sequencesPerContext: 4, options: {} },
      { name: 'batchSize 64', sequencesPerContext: 4, options: { batchSize: 64 } },
      { name: 'batchSize 2048', sequencesPerContext: 4, options: { batchSize: 2048 } },
      // 3.21.1 names only 'nextCycle' (setImmediate); 'nextTick' is given as a custom schedule function.
      { name: 'dispatchSchedule nextTick (custom: process.nextTick)', sequencesPerContext: 4, options: { batching: { dispatchSchedule: nextTick } } },
      { name: "itemPrioritizationStrategy 'firstInFirstOut'", sequencesPerContext: 4, options: { batching: { itemPrioritizationStrategy: 'firstInFirstOut' } } },
      { name: 'nextTick + firstInFirstOut', sequencesPerContext: 4, options: { batching: { dispatchSchedule: nextTick, itemPrioritizationStrategy: 'firstInFirstOut' } } },
      { name: '1 seq/ctx (4 contexts, no cross-request batching)', sequencesPerContext: 1, options: {} },
      { name: '2 seq/ctx (2 contexts)', sequencesPerContext: 2, options: {} },
      { name: '8 seq/ctx (1 context, 4 in use)', sequencesPerContext: 8, options: {} },
      { name: `contextSize ${BIG_CONTEXT_SIZE}/seq`, sequencesPerContext: 4, options: { contextSize: BIG_CONTEXT_SIZE } },
    ];
    // Every configuration is set up once; the rounds then visit them in turn, so background load
    // that drifts over the minutes of the sweep hits every configuration alike.
    const setups: { c: SweepCase; contexts: LlamaContext[]; sequences: LlamaContextSequence[]; agg: number[]; single: number[] }[] = [];
    try {
      for (const c of cases) {
        const contexts: LlamaContext[] = [];
        const sequences: LlamaContextSequence[] = [];
        setups.push({ c, contexts, sequences, agg: [], single: [] });
        while (sequences.length < streams) {
          const context = await model.createContext({ ...base, ...c.options, sequences: c.sequencesPerContext });
          contexts.push(context);
          for (let i = 0; i < c.sequencesPerContext && sequences.length < streams; i++) sequences.push(context.getSequence());
        }
      }
      const settings = await findFullLengthPrompt(setups[0]!.sequences[0]!, tokens);
      for (const setup of setups) await concurrent((i) => rawGenerate(setup.sequences[i]!, settings), streams); // warm-up
      for (let r = 0; r < sweepRepeats; r++) {
        for (const setup of setups) {
          setup.agg.push((await concurrent((i) => rawGenerate(setup.sequences[i]!, settings), streams)).aggregateTps);
          setup.single.push((await rawGenerate(setup.sequences[0]!, settings)).e2eTps);
        }
        log(`  round ${r + 1}/${sweepRepeats} done (load average ${os.loadavg()[0]!.toFixed(2)})`);
      }
    } finally {
      for (const setup of setups) for (const context of setup.contexts) await context.dispose();
    }
    const baseline = median(setups[0]!.agg);
    const rows = setups.map(({ c, agg, single }) => [
      c.name,
      fmt(median(single)),
      fmt(median(agg)),
      fmt(Math.min(...agg)),
      fmt(Math.max(...agg)),
      `${fmt(median(agg) / baseline, 2)}x`,
      `${fmt(median(agg) / median(single), 2)}x`,
    ]);
    await model.dispose();
    log();
    log(`sweep: raw ${streams}-stream aggregate tokens/s, ${sweepPreset}, ${tokens} tokens/stream, threads ${threads}, median of ${sweepRepeats}`);
    log(table(['configuration', '1 stream tok/s', `${streams} streams tok/s`, 'min', 'max', 'vs baseline', `${streams} vs 1`], rows));
  } finally {
    models.remove();
  }
}

log(`engine-throughput: preset ${preset}, ${tokens} tokens, threads ${threads}, repeats ${repeats}${sweep ? `, sweep on ${sweepPreset}` : ''}`);
log(machineLine());
const llama = await startLlama();
log(`llama.cpp: maxThreads ${llama.maxThreads}, cpuMathCores ${llama.cpuMathCores}`);
try {
  if (!sweepOnly) await mainComparison(llama);
  if (sweep) {
    log();
    await runSweep(llama);
  }
} finally {
  await llama.dispose();
}
log();
log(`done; ${machineLine()}`);

