// Exactly-once writes: a server that processes a POST and then resets the socket. With the
// Idempotency-Key the SDK sends (one per call, the same on every retry), the retry gets the first
// answer and the work is done once; without a key, the SDK does not repeat the POST. Against a
// local node:http server and against the reference server behind a proxy that drops the first
// answer.
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../test/helpers/server.js';
import { ConflictError, ConnectionError, InfernoClient } from '../src/index.js';
import { type LocalServer, sendJson, startLocalServer } from './helpers/http.js';

const newUser = { username: 'exactly-once', password: 'correct-horse-battery' };
const fastRetry = { baseDelay: 20, jitter: 0 };

let local: LocalServer | undefined;
afterEach(async () => {
  await local?.close();
  local = undefined;
});

/** A server with idempotency keys of its own, which resets the socket after processing the first request. */
async function droppingServer() {
  let executions = 0;
  const stored = new Map<string, unknown>();
  const server = await startLocalServer((req, res, i) => {
    const key = req.headers['idempotency-key'] as string | undefined;
    if (key && stored.has(key)) return sendJson(res, 201, stored.get(key), { 'idempotency-replayed': 'true' });
    executions++;
    const created = { id: `user-${executions}`, username: JSON.parse(req.body).username };
    if (key) stored.set(key, created);
    // Processed, then the connection dies before the answer: "other side closed".
    if (i === 0) return void req.socket.destroy();
    sendJson(res, 201, created);
  });
  return { server, executions: () => executions };
}

describe('a POST processed before the connection dropped', () => {
  it('runs once and the retry returns the first answer, with the same key on both attempts', async () => {
    const dropping = await droppingServer();
    local = dropping.server;
    const client = new InfernoClient({ baseUrl: local.url, apiKey: 'k', retry: fastRetry });
    const { data, headers } = await client.users.create(newUser).withResponse();
    expect(data).toEqual({ id: 'user-1', username: 'exactly-once' });
    expect(headers.get('idempotency-replayed')).toBe('true');
    expect(dropping.executions()).toBe(1);
    const keys = local.requests.map((r) => r.headers['idempotency-key']);
    expect(keys).toHaveLength(2);
    expect(keys[1]).toBe(keys[0]);
  });

  it('is not repeated without a key: "other side closed" after sending is no proof it was not processed', async () => {
    const dropping = await droppingServer();
    local = dropping.server;
    const client = new InfernoClient({ baseUrl: local.url, apiKey: 'k', retry: fastRetry });
    const error = await client.users.create(newUser, { idempotencyKey: false }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(local.requests).toHaveLength(1);
    expect(dropping.executions()).toBe(1);
  });

  it('is repeated without a key when the error proves nothing was sent (connection refused)', async () => {
    // A port that refuses the first connection: listen only after the first attempt failed.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    let server: Server | undefined;
    const seen: string[] = [];
    const client = new InfernoClient({
      baseUrl: `http://127.0.0.1:${port}`,
      apiKey: 'k',
      retry: { baseDelay: 150, jitter: 0 },
      onRetry: (event) => {
        seen.push(event.error.message);
        server ??= createServer((_req, res) => sendJson(res, 201, { id: 'u', username: 'x' })).listen(port, '127.0.0.1');
      },
    });
    try {
      await expect(client.users.create(newUser, { idempotencyKey: false })).resolves.toEqual({ id: 'u', username: 'x' });
      expect(seen[0]).toMatch(/ECONNREFUSED/);
    } finally {
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    }
  });

  it('keeps a key given by the caller, and sends none for operations that do not create anything', async () => {
    local = await startLocalServer((_req, res) => sendJson(res, 201, { id: 'j' }));
    const client = new InfernoClient({ baseUrl: local.url, apiKey: 'k' });
    await client.jobs.create({ requests: [{ model: 'm', prompt: 'p' }] }, { idempotencyKey: 'order-42' });
    await client.models.load('m');
    expect(local.requests.map((r) => r.headers['idempotency-key'])).toEqual(['order-42', undefined]);
  });
});

describe('against the reference server', () => {
  let server: TestServer;
  let proxy: Server;
  let proxyUrl: string;
  let dropNext = 0;
  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000 } });
    // Forwards to the server; for the next `dropNext` POSTs it waits for the answer, then resets the client's socket.
    proxy = createServer((req, res) => {
      const upstream = httpRequest(new URL(req.url!, server.url), { method: req.method, headers: req.headers }, (answer) => {
        if (req.method === 'POST' && dropNext > 0) {
          dropNext--;
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
    proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    proxy?.closeAllConnections();
    await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
    await server?.close();
  });

  const admin = () => new InfernoClient({ baseUrl: server.url, credentials: { username: 'admin', password: server.adminPassword } });

  it('creates the user once when the answer is lost, and the retry gets the stored answer', async () => {
    const direct = admin();
    const { token } = await direct.auth.login();
    const client = new InfernoClient({ baseUrl: proxyUrl, token, retry: fastRetry });
    dropNext = 1;
    const { data, headers } = await client.users.create({ username: 'created-once', password: 'correct-horse-battery' }).withResponse();
    expect(data.username).toBe('created-once');
    expect(headers.get('idempotency-replayed')).toBe('true');
    const users = await direct.users.list();
    expect(users.data.filter((u) => u.username === 'created-once')).toHaveLength(1);
  });

  it('without a key, the lost answer is a ConnectionError and a manual repeat is a ConflictError', async () => {
    const direct = admin();
    const { token } = await direct.auth.login();
    const client = new InfernoClient({ baseUrl: proxyUrl, token, retry: fastRetry });
    dropNext = 1;
    const body = { username: 'created-unkeyed', password: 'correct-horse-battery' };
    await expect(client.users.create(body, { idempotencyKey: false })).rejects.toBeInstanceOf(ConnectionError);
    await expect(client.users.create(body, { idempotencyKey: false })).rejects.toBeInstanceOf(ConflictError);
  });

  it('queues a job once when its answer is lost twice', async () => {
    const direct = admin();
    const { token } = await direct.auth.login();
    const before = (await direct.jobs.list()).data.length;
    const client = new InfernoClient({ baseUrl: proxyUrl, token, retry: fastRetry });
    dropNext = 2;
    const job = await client.jobs.create({ name: 'once', requests: [{ model: 'demo-tiny', prompt: 'Hi', max_tokens: 1 }] });
    const after = await direct.jobs.list();
    expect(after.data.length).toBe(before + 1);
    expect(after.data[0]!.id).toBe(job.id);
  });
});
