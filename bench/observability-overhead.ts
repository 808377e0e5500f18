/**
 * What metrics and usage accounting cost per request: the same server with them on (the default)
 * and off (`[metrics] enabled = false`, `[usage] enabled = false`), and with tracing on too (to an
 * OTLP/HTTP sink in this process), each a child process, measured in alternating rounds.
 *
 *   npx tsx bench/observability-overhead.ts [--seconds 3] [--rounds 5] [--concurrency 16] [--tokens 128] [--streams 9]
 *
 * (a) authenticated `GET /api/v1/models` (an API key) requests/s at a fixed concurrency;
 * (b) one-token generations/s (`POST /api/v1/inference`, max_tokens 1): the per-generation work
 *     (token counters, histograms, usage accounting, log fields) with the least compute around it;
 * (c) streamed tokens/s of one greedy generation on demo-tiny (its tokens take a third of a
 *     millisecond, so the per-token work of the server shows as nowhere else).
 * (d) the instrumentation calls alone, in this process: µs per request event and per generation
 *     event (metrics and usage accounting), which the end-to-end figures cannot resolve.
 * Medians over the rounds; ratios against "off", all in this one run. Wall-clock rates swing
 * with whatever else the machine runs, so the server's own CPU time (from /proc, Linux) per
 * request and per streamed token is reported too: it is what the instrumentation costs.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { writeDemoModel } from '../server/src/engine/demo-model.js';
import { createLogger } from '../server/src/logging/logger.js';
import { ServerMetrics } from '../server/src/observability/metrics.js';
import { UsageRecorder } from '../server/src/observability/usage.js';
import { apiKeyOf, cpuSeconds, fmt, machineLine, median, parseFlags, serverStream, startChildServer, table, tempDir, type BenchServer } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const seconds = Number(flags.get('seconds') ?? 3);
const rounds = Number(flags.get('rounds') ?? 5);
const concurrency = Number(flags.get('concurrency') ?? 16);
const tokens = Number(flags.get('tokens') ?? 256);
const streams = Number(flags.get('streams') ?? 15);
const log = (line = '') => process.stdout.write(line + '\n');

/** Accepts OTLP exports and drops them. */
async function otlpSink(): Promise<{ url: string; received: () => number; close: () => Promise<void> }> {
  let received = 0;
  const sink = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received++;
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(sink.address() as AddressInfo).port}`, received: () => received, close: () => new Promise((r) => sink.close(() => r())) };
}

/** What the load loop sends. */
interface Load {
  path: string;
  body?: unknown;
  concurrency: number;
}
const MODELS: Load = { path: '/api/v1/models', concurrency };
/** One-token generations: the per-generation work (metrics, usage, log fields) with the least compute around it. */
const ONE_TOKEN: Load = { path: '/api/v1/inference', body: { model: 'demo-tiny', prompt: 'Hi', max_tokens: 1 }, concurrency: 4 };

/** Requests/s of `load` with its concurrency for `seconds`, over keep-alive connections. */
async function rate(url: string, key: string, load: Load): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: load.concurrency });
  const target = new URL(load.path, url);
  const body = load.body === undefined ? undefined : JSON.stringify(load.body);
  const once = () =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(target, { agent, method: body ? 'POST' : 'GET', headers: { 'X-API-Key': key, ...(body && { 'Content-Type': 'application/json' }) } }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`${load.path} answered ${res.statusCode}`));
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end(body);
    });
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: load.concurrency }, async () => {
      while (performance.now() < deadline) {
        await once();
        done++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  return done / elapsed;
}

/** µs per call of each instrumentation event, in a tight loop (median of 5 runs of `n`). */
function microCosts(n = 200_000): { request: number; generation: number; usage: number } {
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const usage = new UsageRecorder({ addUsage: async () => undefined, queryUsage: async () => [] }, createLogger('silent'), { enabled: () => true, flushIntervalMs: 60_000 });
  const observation = { finishReason: 'stop', promptTokens: 12, completionTokens: 64, queuedMs: 0.2, promptMs: 1.5, generationMs: 21, totalMs: 22.7 };
  const time = (work: () => void) =>
    median(
      Array.from({ length: 5 }, () => {
        const started = performance.now();
        for (let i = 0; i < n; i++) work();
        return ((performance.now() - started) * 1000) / n;
      }),
    );
  return {
    request: time(() => {
      metrics.httpStarted();
      metrics.httpFinished('/api/v1/models', 'GET', 200, 0.0011);
    }),
    generation: time(() => metrics.generation('demo-tiny', 'native', observation)),
    usage: time(() => usage.record({ userId: 'u', keyId: 'k', model: 'demo-tiny', promptTokens: 12, completionTokens: 64 })),
  };
}

async function main() {
  log(`observability overhead: ${machineLine()}`);
  const models = tempDir('inferno-bench-models-');
  const sink = await otlpSink();
  const variants: { name: string; settings: Record<string, string | number> }[] = [
    { name: 'off', settings: { 'metrics.enabled': 'false', 'usage.enabled': 'false' } },
    { name: 'metrics + usage (default)', settings: {} },
    { name: 'metrics + usage + tracing', settings: { 'tracing.otlp_endpoint': sink.url } },
  ];
  const servers: (BenchServer & { key: string })[] = [];
  try {
    await writeDemoModel(path.join(models.dir, 'demo-tiny.gguf'), { preset: 'tiny' });
    for (const variant of variants) {
      const server = await startChildServer({ modelsDir: models.dir, settings: variant.settings });
      servers.push({ ...server, key: await apiKeyOf(server) });
    }
    const settings = { prompt: 'Hello world', maxTokens: tokens, temperature: 0, seed: 42 };
    // Warm-up: the model loaded, the JIT warm, on every server.
    for (const server of servers) {
      await rate(server.url, server.key, MODELS);
      await rate(server.url, server.key, ONE_TOKEN);
      for (let i = 0; i < 3; i++) await serverStream(server, 'demo-tiny', settings);
    }

    /** Medians of req/s and the server's CPU µs per request, per variant, over alternating rounds. */
    const measure = async (load: Load) => {
      const rates: number[][] = variants.map(() => []);
      const cpu = variants.map(() => ({ seconds: 0, requests: 0 }));
      for (let round = 0; round < rounds; round++) {
        for (const [i, server] of servers.entries()) {
          const before = cpuSeconds(server.pid!);
          const perSecond = await rate(server.url, server.key, load);
          cpu[i]!.seconds += cpuSeconds(server.pid!) - before;
          cpu[i]!.requests += perSecond * seconds;
          rates[i]!.push(perSecond);
        }
      }
      return { rates: rates.map(median), us: cpu.map((c) => (c.seconds / c.requests) * 1e6) };
    };
    const listing = await measure(MODELS);
    const oneToken = await measure(ONE_TOKEN);

    const tps: number[][] = variants.map(() => []);
    const generated: number[] = variants.map(() => 0);
    const streamCpu = variants.map(() => ({ seconds: 0, tokens: 0 }));
    for (let n = 0; n < streams; n++) {
      for (const [i, server] of servers.entries()) {
        const cpu = cpuSeconds(server.pid!);
        const run = await serverStream(server, 'demo-tiny', settings);
        streamCpu[i]!.seconds += cpuSeconds(server.pid!) - cpu;
        streamCpu[i]!.tokens += run.tokens;
        tps[i]!.push(run.e2eTps);
        generated[i] = run.tokens;
      }
    }
    const usPerToken = streamCpu.map((c) => (c.seconds / c.tokens) * 1e6);
    const baseTps = median(tps[0]!);
    const rows = (m: { rates: number[]; us: number[] }) =>
      variants.map((v, i) => [v.name, fmt(m.rates[i]!, 0), fmt(m.rates[i]! / m.rates[0]!, 3), fmt(m.us[i]!, 0), fmt(m.us[i]! / m.us[0]!, 3)]);
    const headers = ['variant', 'req/s', 'ratio', 'server CPU µs/request', 'ratio'];
    log();
    log(`(a) authenticated GET /api/v1/models, ${concurrency} concurrent clients, ${rounds} alternating rounds of ${seconds} s, medians`);
    log(table(headers, rows(listing)));
    log();
    log(`(b) POST /api/v1/inference of 1 token, ${ONE_TOKEN.concurrency} concurrent clients, ${rounds} alternating rounds of ${seconds} s, medians`);
    log(table(headers, rows(oneToken)));
    log();
    log(`(c) streamed generations of ${generated[0]} greedy tokens, ${streams} per variant, alternating, medians`);
    log(
      table(
        ['variant', 'streamed tokens/s', 'ratio', 'server CPU µs/token', 'ratio'],
        variants.map((v, i) => [v.name, fmt(median(tps[i]!), 0), fmt(median(tps[i]!) / baseTps, 3), fmt(usPerToken[i]!, 0), fmt(usPerToken[i]! / usPerToken[0]!, 3)]),
      ),
    );
    log(`(tracing exports received by the sink: ${sink.received()})`);
    const micro = microCosts();
    log();
    log('(d) the instrumentation calls alone, in this process, µs per call (median of 5 loops of 200,000)');
    log(table(['event', 'µs'], [['HTTP request (in-flight gauge, counter, histogram)', fmt(micro.request, 2)], ['generation (2 counters, 2 more, 3 histograms)', fmt(micro.generation, 2)], ['usage accounting of a request', fmt(micro.usage, 2)]]));
  } finally {
    for (const server of servers) await server.stop();
    await sink.close();
    models.remove();
  }
}

await main();
