// The SDK under failure, counted: how often the work runs and how many requests go on the wire
// when connections drop after the server did the work, when the server answers 429 storms, and
// when a burst meets a low rate limit. Local node:http servers stand in for the failures; the
// burst (and one drop scenario) runs against the reference server itself.
//
//   npx tsx bench/sdk-failure.ts [calls=100]
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestServer } from '../test/helpers/server.js';
import { InfernoClient } from '../sdk/src/index.js';

const calls = Number(process.argv[2] ?? 100);
const fastRetry = { baseDelay: 10, maxDelay: 200, jitter: 0 };

async function listen(handler: (req: IncomingMessage & { body: string }, res: ServerResponse) => void) {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(Object.assign(req, { body: Buffer.concat(chunks).toString() }), res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};

function row(label: string, figures: Record<string, number | string>) {
  console.log(`${label.padEnd(58)} ${Object.entries(figures).map(([k, v]) => `${k} ${v}`).join(', ')}`);
}

// 1. Every first attempt is processed, then its socket is reset ("other side closed").
async function dropsAfterProcessing(withKeys: boolean) {
  let executions = 0;
  let wire = 0;
  const stored = new Map<string, unknown>();
  const seenKeys = new Set<string>();
  const { server, url } = await listen((req, res) => {
    wire++;
    const key = req.headers['idempotency-key'] as string | undefined;
    if (key && stored.has(key)) return json(res, 201, stored.get(key), { 'idempotency-replayed': 'true' });
    executions++;
    const user = { id: `u${executions}`, username: JSON.parse(req.body).username };
    if (key) stored.set(key, user);
    const first = key ? !seenKeys.has(key) : executions % 2 === 1;
    if (key) seenKeys.add(key);
    if (first) return void req.socket.destroy();
    json(res, 201, user);
  });
  const client = new InfernoClient({ baseUrl: url, apiKey: 'k', retry: fastRetry });
  const results = await Promise.allSettled(
    Array.from({ length: calls }, (_, i) => client.users.create({ username: `u${i}`, password: 'pw-pw-pw-pw-pw' }, withKeys ? {} : { idempotencyKey: false })),
  );
  server.close();
  row(`drop after processing, ${withKeys ? 'Idempotency-Key per call' : 'no key'}`, {
    calls,
    succeeded: results.filter((r) => r.status === 'fulfilled').length,
    'executions': executions,
    'requests on the wire': wire,
  });
}

// 2. The same against the reference server, behind a proxy that loses every first answer.
async function dropsAgainstTheServer() {
  const target = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 100_000 } });
  const lost = new Set<string>();
  let wire = 0;
  const proxy = createServer((req, res) => {
    wire++;
    const key = String(req.headers['idempotency-key'] ?? '');
    const upstream = httpRequest(new URL(req.url!, target.url), { method: req.method, headers: req.headers }, (answer) => {
      if (req.method === 'POST' && key && !lost.has(key)) {
        lost.add(key);
        answer.resume();
        answer.on('end', () => req.socket.destroy());
        return;
      }
      res.writeHead(answer.statusCode!, answer.headers);
      answer.pipe(res);
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const direct = new InfernoClient({ baseUrl: target.url, credentials: { username: 'admin', password: target.adminPassword } });
  const { token } = await direct.auth.login();
  const client = new InfernoClient({ baseUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, token, retry: fastRetry });
  const n = Math.min(calls, 50);
  const results = await Promise.allSettled(
    Array.from({ length: n }, (_, i) => client.users.create({ username: `bench-${i}`, password: 'pw-pw-pw-pw-pw' })),
  );
  const users = (await direct.users.list()).data.filter((u) => u.username.startsWith('bench-')).length;
  proxy.closeAllConnections();
  proxy.close();
  await target.close();
  row('reference server, every first answer lost', { calls: n, succeeded: results.filter((r) => r.status === 'fulfilled').length, 'users created': users, 'requests on the wire': wire });
}

// 3. A 429 storm: for its first second the server refuses everything with Retry-After: 1.
async function storm() {
  let wire = 0;
  let refused = 0;
  const started = Date.now();
  const { server, url } = await listen((_req, res) => {
    wire++;
    if (Date.now() - started < 1000) {
      refused++;
      return json(res, 429, { error: { code: 'RATE_LIMITED', message: 'slow down', details: null } }, { 'retry-after': '1' });
    }
    json(res, 200, { object: 'list', data: [] });
  });
  const client = new InfernoClient({ baseUrl: url, apiKey: 'k', retry: fastRetry });
  const results = await Promise.allSettled(Array.from({ length: calls }, () => client.models.list()));
  server.close();
  row('429 storm for 1 s (Retry-After: 1)', { calls, succeeded: results.filter((r) => r.status === 'fulfilled').length, '429s': refused, 'requests on the wire': wire });
}

// 4. A burst of 30 against the reference server at 10 requests per 2 s window.
async function burst(throttle: boolean) {
  const target = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10, 'rate_limit.window_seconds': 2 } });
  const admin = new InfernoClient({ baseUrl: target.url, credentials: { username: 'admin', password: target.adminPassword } });
  const { key } = await admin.apiKeys.create({ name: 'burst', permissions: ['read_models'] });
  // The budget is the user's: the admin's own calls above spent some of this window. The burst
  // starts on a fresh one.
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  const statuses: number[] = [];
  const counting: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    statuses.push(response.status);
    return response;
  };
  const client = new InfernoClient({ baseUrl: target.url, apiKey: key, fetch: counting, maxRetries: throttle ? 2 : 0, rateLimit: { throttle } });
  const started = performance.now();
  const results = await Promise.allSettled(Array.from({ length: 30 }, () => client.models.list()));
  const seconds = (performance.now() - started) / 1000;
  await target.close();
  row(`burst of 30 at 10 per 2 s, ${throttle ? 'throttle on' : 'throttle off, no retries'}`, {
    succeeded: results.filter((r) => r.status === 'fulfilled').length,
    '429s on the wire': statuses.filter((s) => s === 429).length,
    'requests on the wire': statuses.length,
    seconds: seconds.toFixed(1),
    // X-RateLimit-Reset is in whole seconds: each refill can be seen up to 1 s late.
    'theoretical minimum s': '4 (2 refills of 2 s), 6 with the Reset header rounded up',
  });
}

console.log(`node ${process.version}; ${calls} calls per scenario`);
await dropsAfterProcessing(true);
await dropsAfterProcessing(false);
await dropsAgainstTheServer();
await storm();
await burst(true);
await burst(false);
process.exit(0);
