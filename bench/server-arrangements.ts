/**
 * Which `[engine] sequences_per_context` and `threads` serve best through the server: one child
 * server per arrangement (4 sequences in contexts of 1, 2 or 4; the engine's threads in all),
 * alternating round by round, each streaming OpenAI `/v1/completions` and `/v1/chat/completions`
 * (128 greedy tokens), 1 and 4 at once; medians of aggregate tokens/s. The clients run on the same
 * machine, as a benchmark's do.
 *
 *   npx tsx bench/server-arrangements.ts [--model small-q8_0|small-f16|tiny] [--per-context 1,2,4] [--threads 1,2] [--rounds 4]
 */
import path from 'node:path';
import { writeDemoModel } from '../server/src/engine/demo-model.js';
import { DEMO_MODELS, fmt, machineLine, median, parseFlags, startChildServer, table, tempDir, type BenchServer } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const modelName = flags.get('model') ?? 'small-q8_0';
const perContext = (flags.get('per-context') ?? '1,2,4').split(',').map(Number);
const threadCounts = (flags.get('threads') ?? '1,2').split(',').map(Number);
const rounds = Number(flags.get('rounds') ?? 4);
const spec = DEMO_MODELS[modelName];
if (!spec) throw new Error(`unknown model ${modelName}`);
const model = `demo-${modelName}`;
const log = (line = '') => process.stdout.write(line + '\n');

type Kind = 'completion' | 'chat';
async function stream(server: BenchServer, kind: Kind): Promise<number> {
  const input = kind === 'chat' ? { messages: [{ role: 'user', content: 'Tell me a story' }] } : { prompt: 'Hello world' };
  const response = await fetch(`${server.url}/v1/${kind === 'chat' ? 'chat/completions' : 'completions'}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, ...input, max_tokens: 128, temperature: 0, stream: true, stream_options: { include_usage: true } }),
  });
  const usage = /"usage":(\{[^}]*\})/.exec(await response.text());
  if (!usage) throw new Error(`${kind} stream answered ${response.status} without usage`);
  return (JSON.parse(usage[1]!) as { completion_tokens: number }).completion_tokens;
}
async function aggregate(server: BenchServer, streams: number, kind: Kind): Promise<number> {
  const started = performance.now();
  const tokens = (await Promise.all(Array.from({ length: streams }, () => stream(server, kind)))).reduce((a, b) => a + b, 0);
  return (tokens * 1000) / (performance.now() - started);
}

log(`server-arrangements: demo ${modelName}, 128 greedy tokens per stream, ${rounds} alternating rounds`);
log(machineLine());
const models = tempDir('inferno-bench-arrangements-');
await writeDemoModel(path.join(models.dir, `${model}.gguf`), spec);
const servers: { perContext: number; threads: number; server: BenchServer; samples: Map<string, number[]> }[] = [];
try {
  for (const n of perContext) {
    for (const threads of threadCounts) {
      const settings = { 'rate_limit.requests_per_minute': 100_000_000, 'engine.sequences_per_context': n, 'engine.threads': threads, 'logging.level': 'info' };
      servers.push({ perContext: n, threads, server: await startChildServer({ modelsDir: models.dir, settings }), samples: new Map() });
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
    servers.map(({ perContext: n, threads, samples }) => [`${Math.ceil(4 / n)}x${n}, ${threads}`, ...columns.map((c) => fmt(median(samples.get(c)!)))]),
  ));
} finally {
  for (const { server } of servers) await server.stop();
  models.remove();
}
log();
log(`done; ${machineLine()}`);
