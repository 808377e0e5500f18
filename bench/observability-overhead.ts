/**
 * What metrics and usage accounting cost per request: the same server with them on (the default)
 * and off (`[metrics] enabled = false`, `[usage] enabled = false`), and with tracing on too (to an
 * OTLP/HTTP sink in this process), each a child process, measured in alternating rounds.
 *
 *   npx tsx bench/observability-overhead.ts [--seconds 3] [--rounds 5] [--concurrency 16] [--tokens 128] [--streams 9]
 *
 * (a) authenticated `GET /api/v1/models` (an API key) requests/s at a fixed concurrency;
 * (b) streamed tokens/s of one greedy generation on demo-tiny (its tokens take a third of a
 *     millisecond, so the per-token work of the server shows as nowhere else).
 * Medians over the rounds; ratios against "off", all in this one run. Wall-clock rates swing
 * with whatever else the machine runs, so the server's own CPU time (from /proc, Linux) per
 * request and per streamed token is reported too: it is what the instrumentation costs.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { writeDemoModel } from '../server/src/engine/demo-model.js';
import { fmt, machineLine, median, parseFlags, serverStream, startChildServer, table, tempDir, type BenchServer } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const seconds = Number(flags.get('seconds') ?? 3);
const rounds = Number(flags.get('rounds') ?? 5);
const concurrency = Number(flags.get('concurrency') ?? 16);
const tokens = Number(flags.get('tokens') ?? 256);
const streams = Number(flags.get('streams') ?? 15);
const log = (line = '') => process.stdout.write(line + '\n');

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

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

async function apiKeyOf(server: BenchServer): Promise<string> {
  const res = await fetch(`${server.url}/api/v1/auth/api-keys`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'bench', permissions: ['read_models', 'run_inference', 'use_streaming'] }),
  });
  if (res.status !== 201) throw new Error(`key creation answered ${res.status}`);
  return ((await res.json()) as { key: string }).key;
}

/** Requests/s of `GET /api/v1/models` with `concurrency` clients for `seconds`, over keep-alive connections. */
async function modelsRate(url: string, key: string): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const target = new URL('/api/v1/models', url);
  const once = () =>
    new Promise<void>((resolve, reject) => {
      const req = http.get(target, { agent, headers: { 'X-API-Key': key } }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`GET /api/v1/models answered ${res.statusCode}`));
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
    });
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
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
      await modelsRate(server.url, server.key);
      for (let i = 0; i < 3; i++) await serverStream(server, 'demo-tiny', settings);
    }

    const rates: number[][] = variants.map(() => []);
    const tps: number[][] = variants.map(() => []);
    const generated: number[] = variants.map(() => 0);
    const requestCpu = variants.map(() => ({ seconds: 0, requests: 0 }));
    const streamCpu = variants.map(() => ({ seconds: 0, tokens: 0 }));
    for (let round = 0; round < rounds; round++) {
      for (const [i, server] of servers.entries()) {
        const cpu = cpuSeconds(server.pid);
        const rate = await modelsRate(server.url, server.key);
        requestCpu[i]!.seconds += cpuSeconds(server.pid) - cpu;
        requestCpu[i]!.requests += rate * seconds;
        rates[i]!.push(rate);
      }
    }
    for (let n = 0; n < streams; n++) {
      for (const [i, server] of servers.entries()) {
        const cpu = cpuSeconds(server.pid);
        const run = await serverStream(server, 'demo-tiny', settings);
        streamCpu[i]!.seconds += cpuSeconds(server.pid) - cpu;
        streamCpu[i]!.tokens += run.tokens;
        tps[i]!.push(run.e2eTps);
        generated[i] = run.tokens;
      }
    }
    const usPerRequest = requestCpu.map((c) => (c.seconds / c.requests) * 1e6);
    const usPerToken = streamCpu.map((c) => (c.seconds / c.tokens) * 1e6);

    const baseRate = median(rates[0]!);
    const baseTps = median(tps[0]!);
    log();
    log(`GET /api/v1/models: ${concurrency} concurrent clients, ${rounds} rounds of ${seconds} s; streams: ${streams} greedy generations of ${generated[0]} tokens each; medians`);
    log(
      table(
        ['variant', 'req/s', 'ratio', 'server CPU µs/request', 'ratio', 'streamed tokens/s', 'ratio', 'server CPU µs/token', 'ratio'],
        variants.map((v, i) => [
          v.name,
          fmt(median(rates[i]!), 0),
          fmt(median(rates[i]!) / baseRate, 3),
          fmt(usPerRequest[i]!, 0),
          fmt(usPerRequest[i]! / usPerRequest[0]!, 3),
          fmt(median(tps[i]!), 0),
          fmt(median(tps[i]!) / baseTps, 3),
          fmt(usPerToken[i]!, 0),
          fmt(usPerToken[i]! / usPerToken[0]!, 3),
        ]),
      ),
    );
    log(`(tracing exports received by the sink: ${sink.received()})`);
  } finally {
    for (const server of servers) await server.stop();
    await sink.close();
    models.remove();
  }
}

await main();
