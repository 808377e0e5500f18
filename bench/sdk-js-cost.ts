// Pure-JS cost per call, without the network: every variant sends through a `fetch` stub that
// answers at once with a prebuilt body, so what is timed is the client-side work alone (building
// the request, auth, retries/timeout wiring, rate-limit tracking, parsing, error mapping).
// Same process, interleaved rounds, medians of CPU time per call (steadier than wall time on a
// shared machine).
//
// For comparison it also times ky (a root devDependency for this bench only; the SDK does not
// use it): ky alone with a timeout and no retries, the least the SDK would pay with ky as its
// HTTP layer, and the arrangement the SDK had before it sent with fetch itself: the generated
// operation on hey-api's client with ky as its `fetch`.
//
//   npx tsx bench/sdk-js-cost.ts [calls-per-round=2000] [rounds=15]
import os from 'node:os';
import ky from 'ky';
import { createHttpClient } from '../sdk/src/core/http.js';
import { createClient } from '../sdk/src/gen/client/index.js';
import { listModels } from '../sdk/src/gen/sdk.gen.js';
import { InfernoClient } from '../sdk/src/index.js';

const BODY = JSON.stringify({ object: 'list', data: [{ id: 'demo-tiny', object: 'model', size_bytes: 1, modified_at: '2026-11-28T06:00:00.000Z', loaded: true }] });
const headers = () =>
  new Headers({ 'content-type': 'application/json', 'x-request-id': 'req-1', 'x-ratelimit-limit': '1000000', 'x-ratelimit-remaining': '999999', 'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + 60) });
// What every variant's fetch does: hand back a fresh response (the floor all share).
const stub: typeof fetch = async () => new Response(BODY, { status: 200, headers: headers() });

const baseUrl = 'http://127.0.0.1:9';
const apiKey = `inf_${'benchmark'.repeat(4)}`;
const client = new InfernoClient({ baseUrl, apiKey, fetch: stub });
const generated = createHttpClient({ baseUrl, fetch: stub });
const kyClient = ky.create({ fetch: stub, retry: 0, timeout: 60_000, throwHttpErrors: true });
const heyapiOnKy = createClient({ baseUrl, fetch: kyClient as unknown as typeof fetch });
const variants = {
  'raw fetch (AbortController + timer)': async () => {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 60_000);
    const response = await stub(`${baseUrl}/api/v1/models`, { headers: { 'x-api-key': apiKey }, signal: controller.signal });
    clearTimeout(timer);
    await response.json();
  },
  'generated op only': async () => {
    const { error } = await listModels({ client: generated, auth: () => apiKey });
    if (error) throw new Error('request failed');
  },
  'client.models.list': async () => {
    await client.models.list();
  },
  'ky.get alone (timeout, no retries)': async () => {
    await kyClient.get(`${baseUrl}/api/v1/models`, { headers: { 'x-api-key': apiKey } }).json();
  },
  'generated op on hey-api client + ky': async () => {
    const { error } = await listModels({ client: heyapiOnKy, auth: () => apiKey });
    if (error) throw new Error('request failed');
  },
};
type Name = keyof typeof variants;
const names = Object.keys(variants) as Name[];
const perRound = Number(process.argv[2] ?? 2000);
const rounds = Number(process.argv[3] ?? 15);
const run = async (fn: () => Promise<void>, n: number) => {
  const started = process.cpuUsage();
  for (let i = 0; i < n; i++) await fn();
  const used = process.cpuUsage(started);
  return (used.user + used.system) / n;
};
for (const name of names) await run(variants[name], 3000);
const samples = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<Name, number[]>;
for (let round = 0; round < rounds; round++) {
  for (const name of round % 2 ? [...names].reverse() : names) samples[name].push(await run(variants[name], perRound));
}
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
const floor = median(samples[names[0]!]);
console.log(`node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
console.log('variant                                          cpu us/call (median)  over the floor');
for (const name of names) {
  const m = median(samples[name]);
  console.log(`${name.padEnd(48)} ${m.toFixed(1).padStart(8)}              ${name === names[0] ? '' : `+${(m - floor).toFixed(1)}`}`);
}
