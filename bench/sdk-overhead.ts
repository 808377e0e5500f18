// Per-call overhead of the SDK: `client.models.list()` against a raw `fetch` of the same URL
// (parsing the same JSON), on the same local server, both warmed, in interleaved rounds so that
// machine noise hits both alike. The server runs in a child process so it does not share the
// event loop. For reference it also times the generated operation alone (no retries, timeout,
// auth or rate-limit tracking) on the SDK's HTTP layer (core/http.ts), which shows what the SDK
// core itself adds, and on hey-api's own fetch client, which builds a Request per call; and ky
// alone (timeout, no retries: the least the SDK would pay with ky as its HTTP layer; ky is a
// root devDependency for the benches only).
//
// Prints wall time and client CPU time per call, and the ratio to raw fetch over all calls and
// as the median of the per-round ratios (steadier on a busy machine), for wall and CPU time.
// The target (issue 9) is on client.models.list's median wall ratio: at most 1.15.
//
//   npx tsx bench/sdk-overhead.ts [calls-per-round=200] [rounds=40]
import { fork } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import ky from 'ky';
import { createHttpClient } from '../sdk/src/core/http.js';
import { createClient } from '../sdk/src/gen/client/index.js';
import { listModels } from '../sdk/src/gen/sdk.gen.js';
import { InfernoClient } from '../sdk/src/index.js';

const MODEL_LIST = JSON.stringify({
  object: 'list',
  data: [
    {
      id: 'demo-tiny',
      object: 'model',
      size_bytes: 1_048_576,
      modified_at: '2026-11-28T06:00:00.000Z',
      loaded: true,
      architecture: 'llama',
      context_length: 2048,
      parameter_count: 1_000_000,
      file_type: 'Q8_0',
    },
  ],
});

if (process.argv[2] === '--serve') {
  let id = 0;
  const server = createServer((_req, res) => {
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(MODEL_LIST),
      'x-request-id': `req-${++id}`,
      'x-ratelimit-limit': '1000000',
      'x-ratelimit-remaining': '999999',
      'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + 60),
    });
    res.end(MODEL_LIST);
  });
  server.listen(0, '127.0.0.1', () => process.send?.((server.address() as AddressInfo).port));
} else {
  const perRound = Number(process.argv[2] ?? 200);
  const rounds = Number(process.argv[3] ?? 40);
  const child = fork(fileURLToPath(import.meta.url), ['--serve'], { stdio: 'inherit' });
  const port = await new Promise<number>((resolve) => child.once('message', (m) => resolve(Number(m))));
  const baseUrl = `http://127.0.0.1:${port}`;
  const apiKey = `inf_${'benchmark'.repeat(4)}`; // a fake key, built so no key-shaped literal is committed

  const client = new InfernoClient({ baseUrl, apiKey });
  const generated = createHttpClient({ baseUrl });
  const heyapi = createClient({ baseUrl });
  const kyClient = ky.create({ retry: 0, timeout: 60_000 });
  const variants = {
    raw: async () => {
      const response = await fetch(`${baseUrl}/api/v1/models`, { headers: { 'x-api-key': apiKey } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      await response.json();
    },
    floor: async () => {
      // What any client with a timeout pays: an AbortController for the attempt, and its timer.
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), 60_000);
      const response = await fetch(`${baseUrl}/api/v1/models`, { headers: { 'x-api-key': apiKey }, signal: controller.signal });
      clearTimeout(timer);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      await response.json();
    },
    generated: async () => {
      const { error } = await listModels({ client: generated, auth: () => apiKey });
      if (error) throw new Error('request failed');
    },
    heyapi: async () => {
      const { error } = await listModels({ client: heyapi, auth: () => apiKey });
      if (error) throw new Error('request failed');
    },
    ky: async () => {
      await kyClient.get(`${baseUrl}/api/v1/models`, { headers: { 'x-api-key': apiKey } }).json();
    },
    sdk: async () => {
      await client.models.list();
    },
  };
  type Name = keyof typeof variants;
  const names = Object.keys(variants) as Name[];

  const run = async (fn: () => Promise<void>, n: number) => {
    const cpu = process.cpuUsage();
    const started = performance.now();
    for (let i = 0; i < n; i++) await fn();
    const used = process.cpuUsage(cpu);
    return { wall: performance.now() - started, cpu: (used.user + used.system) / 1000 };
  };

  for (const name of names) await run(variants[name], 2_000);
  const zeros = () => Object.fromEntries(names.map((name) => [name, 0])) as Record<Name, number>;
  const lists = () => Object.fromEntries(names.map((name) => [name, [] as number[]])) as Record<Name, number[]>;
  const wall = zeros();
  const cpu = zeros();
  const ratios = lists();
  const cpuRatios = lists();
  for (let round = 0; round < rounds; round++) {
    // Alternate the order, so that drift does not favour any of them.
    const order = round % 2 === 0 ? names : [...names].reverse();
    const times = zeros();
    const cpuTimes = zeros();
    for (const name of order) {
      const result = await run(variants[name], perRound);
      times[name] = result.wall;
      cpuTimes[name] = result.cpu;
      wall[name] += result.wall;
      cpu[name] += result.cpu;
    }
    for (const name of names) {
      ratios[name].push(times[name] / times.raw);
      cpuRatios[name].push(cpuTimes[name] / cpuTimes.raw);
    }
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const calls = perRound * rounds;
  const us = (ms: number) => ((ms / calls) * 1000).toFixed(1).padStart(6);
  const labels: Record<Name, string> = {
    raw: 'raw fetch',
    floor: 'fetch + timeout',
    generated: 'generated op only',
    heyapi: 'op on hey-api client',
    ky: 'ky.get alone',
    sdk: 'client.models.list',
  };
  console.log(
    `node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}; ` +
      `${calls} calls each in ${rounds} interleaved rounds`,
  );
  console.log('variant              wall us/call  cpu us/call  ratio(total)  ratio(median)  cpu ratio(median)');
  for (const name of names) {
    console.log(
      `${labels[name].padEnd(20)} ${us(wall[name])}       ${us(cpu[name])}       ` +
        `${(wall[name] / wall.raw).toFixed(3)}         ${median(ratios[name]).toFixed(3)}          ${median(cpuRatios[name]).toFixed(3)}`,
    );
  }
  console.log(`load after: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  child.kill();
}
