/**
 * Raw node-llama-cpp tokens/s by thread count, on the tiny and small demo models, to justify the
 * server's default of `[engine] threads = 1` on a 2-core machine.
 *
 *   npx tsx bench/threads.ts [--tokens 128] [--repeats 5] [--presets tiny,small] [--threads 1,2,2+pool,default] [--budget-s 20]
 *
 * For each preset and thread count: one context like the server's (4 sequences, batchSize 512,
 * 2,048 tokens per sequence), greedy generation of N tokens on 1 stream and on 4 concurrent streams.
 * `default` leaves `threads` unset, which node-llama-cpp resolves to `llama.maxThreads`
 * (max(4, math cores) on a CPU build). `N+pool`: N threads with a persistent ggml threadpool attached
 * (server/src/engine/threadpool.ts), which node-llama-cpp never does: without one ggml starts a
 * threadpool for every decode, from whichever libuv worker runs it. A configuration that is very slow is cut off after
 * --budget-s seconds per measurement and reported with the tokens it managed.
 */
import path from 'node:path';
import { writeDemoModel, type DemoPresetName } from '../server/src/engine/demo-model.js';
import { attachThreadpool, threadpoolUnavailable } from '../server/src/engine/threadpool.js';
import { fmt, machineLine, median, parseFlags, rawGenerate, startLlama, table, tempDir, type RunResult } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const tokens = Number(flags.get('tokens') ?? 128);
const repeats = Number(flags.get('repeats') ?? 5);
const presets = (flags.get('presets') ?? 'tiny,small').split(',') as DemoPresetName[];
const threadSettings = (flags.get('threads') ?? '1,2,2+pool,default').split(',');
const budgetMs = Number(flags.get('budget-s') ?? 20) * 1000;
const STREAMS = 4;

const log = (line = '') => process.stdout.write(line + '\n');

log(`threads: presets ${presets.join(', ')}, ${tokens} tokens, repeats ${repeats}, thread settings ${threadSettings.join(', ')}`);
log(machineLine());
const llama = await startLlama();
log(`llama.cpp: maxThreads ${llama.maxThreads}, cpuMathCores ${llama.cpuMathCores} (what "default" resolves to: ${llama.maxThreads === 0 ? llama.cpuMathCores : llama.maxThreads})`);
const models = tempDir('inferno-bench-threads-');
const rows: (string | number)[][] = [];
try {
  for (const preset of presets) {
    const file = path.join(models.dir, `demo-${preset}.gguf`);
    const started = performance.now();
    await writeDemoModel(file, { preset });
    log(`wrote ${preset} in ${fmt((performance.now() - started) / 1000, 1)} s`);
    const model = await llama.loadModel({ modelPath: file });
    let baseSingle = Number.NaN;
    let baseAgg = Number.NaN;
    for (const setting of threadSettings) {
      const pooled = setting.endsWith('+pool');
      const threads = setting === 'default' ? undefined : Number(setting.replace('+pool', ''));
      const context = await model.createContext({ sequences: STREAMS, contextSize: 2048, batchSize: 512, threads });
      if (pooled && !attachThreadpool(context, context.idealThreads)) throw new Error(`no threadpool: ${threadpoolUnavailable()}`);
      const sequences = Array.from({ length: STREAMS }, () => context.getSequence());
      const settings = { prompt: 'Hello world', maxTokens: tokens, temperature: 0, seed: 42 };
      try {
        // Warm-up, short and cut off by the budget.
        await rawGenerate(sequences[0]!, { ...settings, maxTokens: 16 }, AbortSignal.timeout(budgetMs));
        const single: RunResult[] = [];
        const aggregate: number[] = [];
        let cut = false;
        for (let r = 0; r < repeats; r++) {
          const one = await rawGenerate(sequences[0]!, settings, AbortSignal.timeout(budgetMs));
          single.push(one);
          const t0 = performance.now();
          const all = await Promise.all(sequences.map((s) => rawGenerate(s, settings, AbortSignal.timeout(budgetMs))));
          aggregate.push((all.reduce((n, x) => n + x.tokens, 0) * 1000) / (performance.now() - t0));
          if (one.tokens < tokens || all.some((x) => x.tokens < tokens)) {
            cut = true;
            break; // too slow to repeat
          }
        }
        const s = median(single.map((x) => x.e2eTps));
        const a = median(aggregate);
        if (Number.isNaN(baseSingle)) {
          baseSingle = s;
          baseAgg = a;
        }
        const label = setting === 'default' ? `default (${context.idealThreads})` : `${context.idealThreads}${pooled ? ', threadpool' : ''}`;
        rows.push([preset, label, fmt(s), `${fmt(s / baseSingle, 3)}x`, fmt(a), `${fmt(a / baseAgg, 3)}x`, fmt(median(single.map((x) => x.ttftMs)), 1), cut ? `cut off at ${budgetMs / 1000} s` : `${single.length}`]);
        log(`  ${preset} threads ${label}: 1 stream ${fmt(s)} tok/s, ${STREAMS} streams ${fmt(a)} tok/s${cut ? ' (cut off)' : ''}`);
      } finally {
        await context.dispose();
      }
    }
    await model.dispose();
  }
} finally {
  models.remove();
  await llama.dispose();
}
log();
log(`raw tokens/s by threads (greedy, ${tokens} tokens; medians; ratios vs the first setting of each preset)`);
log(table(['preset', 'threads', '1 stream tok/s', 'vs first', `${STREAMS} streams tok/s`, 'vs first', 'first text ms', 'runs'], rows));
log();
log(`done; ${machineLine()}`);
