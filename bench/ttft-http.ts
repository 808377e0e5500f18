/**
 * The HTTP side of the time to first token: streamed requests to our server (tiny demo model,
 * `POST /api/v1/inference` with `stream: true`, a JWT), and what of their TTFT the engine itself
 * accounts for (the `done` event's `queued_ms + prompt_ms`). The rest is HTTP: the client's fetch,
 * the server's authentication, rate limit, body read, validation, prompt check and opening the
 * stream. A `GET /health` round trip on the same client is the floor HTTP alone costs.
 *
 *   npx tsx bench/ttft-http.ts [--requests 40] [--rounds 5] [--baseline DIR]
 *
 * --baseline DIR: another checkout's server too (e.g. `git archive main` unpacked, with this
 * checkout's node_modules linked in), alternating with ours round by round; medians.
 */
import path from 'node:path';
import { writeDemoModel } from '../server/src/engine/demo-model.js';
import { fmt, machineLine, median, parseFlags, serverStream, startChildServer, table, tempDir, type BenchServer } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const requests = Number(flags.get('requests') ?? 40);
const rounds = Number(flags.get('rounds') ?? 5);
const baselineRoot = flags.get('baseline');
const log = (line = '') => process.stdout.write(line + '\n');

const models = tempDir('inferno-ttft-models-');
await writeDemoModel(path.join(models.dir, 'demo-tiny.gguf'), { preset: 'tiny' });
const settings = { 'rate_limit.requests_per_minute': 100_000_000, 'logging.level': 'info' };
const servers: { name: string; server: BenchServer }[] = [{ name: 'ours', server: await startChildServer({ modelsDir: models.dir, settings }) }];
if (baselineRoot) servers.push({ name: 'baseline', server: await startChildServer({ modelsDir: models.dir, settings, root: baselineRoot }) });
const generation = { prompt: 'Once upon a time', maxTokens: 2, temperature: 0, seed: 1 };

type Sample = { ttft: number; engine: number; health: number };
const samples = servers.map(() => [] as Sample[]);
try {
  log(machineLine());
  for (const { server } of servers) for (let i = 0; i < 5; i++) await serverStream(server, 'demo-tiny', generation); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const [i, { server }] of servers.entries()) {
      for (let n = 0; n < requests; n++) {
        const run = await serverStream(server, 'demo-tiny', generation);
        const started = performance.now();
        await (await fetch(`${server.url}/health`)).arrayBuffer();
        const health = performance.now() - started;
        samples[i]!.push({ ttft: run.ttftMs, engine: run.serverTimings!.queued_ms + run.serverTimings!.prompt_ms, health });
      }
    }
  }
  const m = (xs: Sample[], k: keyof Sample) => median(xs.map((x) => x[k]));
  log(`TTFT over HTTP, tiny demo model, ${rounds} alternating rounds x ${requests} sequential streams; medians in ms`);
  log(
    table(
      ['server', 'TTFT', 'engine queued+prompt', 'TTFT − engine', 'GET /health round trip', 'TTFT − engine − round trip'],
      servers.map(({ name }, i) => {
        const s = samples[i]!;
        const http = median(s.map((x) => x.ttft - x.engine));
        return [name, fmt(m(s, 'ttft'), 2), fmt(m(s, 'engine'), 2), fmt(http, 2), fmt(m(s, 'health'), 2), fmt(http - m(s, 'health'), 2)];
      }),
    ),
  );
  if (baselineRoot) log(`baseline: the server of ${baselineRoot}`);
  log(`done; ${machineLine()}`);
} finally {
  for (const { server } of servers) await server.stop();
  models.remove();
}
