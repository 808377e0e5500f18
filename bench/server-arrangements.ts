/**
 * Which `[engine] sequences_per_context` and `threads` serve best through the server: one child
 * server per arrangement (4 sequences in contexts of 1, 2 or 4; the engine's threads in all),
 * alternating round by round, each streaming OpenAI `/v1/completions` and `/v1/chat/completions`
 * (128 tokens, greedy; or with `--sampled`, sampled at temperature 0.8 with no seed, which a shared
 * context batches while it decodes a deterministic request alone), 1 and 4 at once; medians of
 * aggregate tokens/s. The clients run on the same machine, as a benchmark's do.
 *
 * `--batch-deterministic` adds, for each shared arrangement, a server with `[engine]
 * isolate_deterministic = false`: greedy streams then batch as sampled ones do (and run to their
 * 128 tokens, where sampled ones on a demo model end early), which shows what batching gives.
 *
 * `--prompt-repeat N` sends each prompt N times over (a longer context: from 192 cells on a lone
 * deterministic stream on a shared context decodes beside a pad, see decode-loop.ts #padsFor).
 *
 *   npx tsx bench/server-arrangements.ts [--model small-q8_0|small-f16|tiny] [--per-context 1,2,4] [--threads 1,2] [--rounds 4] [--sampled] [--batch-deterministic] [--prompt-repeat 1]
 */
import path from 'node:path';
import { writeDemoModel } from '../server/src/engine/demo-model.js';
import { DEMO_MODELS, fmt, machineLine, median, parseFlags, startChildServer, table, tempDir, type BenchServer } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const modelName = flags.get('model') ?? 'small-q8_0';
const perContext = (flags.get('per-context') ?? '1,2,4').split(',').map(Number);
const threadCounts = (flags.get('threads') ?? '1,2').split(',').map(Number);
const rounds = Number(flags.get('rounds') ?? 4);
const sampled = flags.has('sampled');
const sampling = sampled ? { temperature: 0.8 } : { temperature: 0 };
const repeat = Number(flags.get('prompt-repeat') ?? 1);
const spec = DEMO_MODELS[modelName];
if (!spec) throw new Error(`unknown model ${modelName}`);
const model = `demo-${modelName}`;
const log = (line = '') => process.stdout.write(line + '\n');

type Kind = 'completion' | 'chat';
async function stream(server: BenchServer, kind: Kind): Promise<number> {
  const input = kind === 'chat' ? { messages: [{ role: 'user', content: 'Tell me a story. '.repeat(repeat).trim() }] } : { prompt: 'Hello world. '.repeat(repeat).trim() };
  const response = await fetch(`${server.url}/v1/${kind === 'chat' ? 'chat/completions' : 'completions'}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, ...input, max_tokens: 128, ...sampling, stream: true, stream_options: { include_usage: true } }),
  });
  const usage = /"usage":(\{[^}]*\})/.exec(await response.text());
  if (!usage) throw new Error(`${kind} stream answered ${response.status} without usage`);
  return (JSON.parse(usage[1]!) as { completion_tokens: number }).completion_tokens;
}
/** Tokens per stream on average (sampled ones can end early, at an end-of-generation token). */
const generated = { tokens: 0, streams: 0 };
async function aggregate(server: BenchServer, streams: number, kind: Kind): Promise<number> {
  const started = performance.now();
  const tokens = (await Promise.all(Array.from({ length: streams }, () => stream(server, kind)))).reduce((a, b) => a + b, 0);
  generated.tokens += tokens;
  generated.streams += streams;
  return (tokens * 1000) / (performance.now() - started);
}

log(`server-arrangements: demo ${modelName}, 128 ${sampled ? 'sampled (temperature 0.8, no seed)' : 'greedy'} tokens per stream at most, ${rounds} alternating rounds${repeat > 1 ? `, prompts ${repeat} times over` : ''}`);
log(machineLine());
const models = tempDir('inferno-bench-arrangements-');
await writeDemoModel(path.join(models.dir, `${model}.gguf`), spec);
const servers: { perContext: number; threads: number; batched: boolean; server: BenchServer; samples: Map<string, number[]> }[] = [];
try {
  for (const n of perContext) {
    for (const threads of threadCounts) {
      for (const batched of n > 1 && flags.has('batch-deterministic') ? [false, true] : [false]) {
        const settings = { 'rate_limit.requests_per_minute': 100_000_000, 'engine.sequences_per_context': n, 'engine.threads': threads, 'engine.isolate_deterministic': !batched, 'logging.level': 'info' };
        servers.push({ perContext: n, threads, batched, server: await startChildServer({ modelsDir: models.dir, settings }), samples: new Map() });
      }
    }
  }
  for (const { server } of servers) await aggregate(server, 4, 'chat'); // warm-up: load the model, resolve the chat template
  const columns = ['completion 1', 'completion 4', 'chat 1', 'chat 4'];
  for (let r = 0; r < rounds; r++) {
    for (const { server, samples } of servers) {
      for (const column of columns) {
        const [kind, streams] = column.split(' ') as [Kind, string];
        samples.set(column, [...(samples.get(column) ?? []), await aggregate(server, Number(streams), kind)]);
      }
    }
    log(`  round ${r + 1}/${rounds} (${machineLine().split('load average ')[1]})`);
  }
  log();
  log(table(
    ['contexts x sequences, engine threads', '/v1/completions 1 stream tok/s', '4 streams', '/v1/chat/completions 1 stream', '4 streams'],
    servers.map(({ perContext: n, threads, batched, samples }) => [`${Math.ceil(4 / n)}x${n}, ${threads}${batched ? ', deterministic batched' : ''}`, ...columns.map((c) => fmt(median(samples.get(c)!)))]),
  ));
  log(`${fmt(generated.tokens / generated.streams)} tokens per stream on average`);
} finally {
  for (const { server } of servers) await server.stop();
  models.remove();
}
log();
log(`done; ${machineLine()}`);
