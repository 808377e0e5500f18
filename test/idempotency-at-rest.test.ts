/**
 * What the idempotency store keeps at rest: only a hash of each Idempotency-Key, and responses
 * sealed under a key derived from the server secret and the raw Idempotency-Key. The database file
 * (and its WAL) never holds a created API key's secret or generated text in clear; the caller that
 * repeats the key gets the same answer; another key opens nothing. Also: a JSON body sent with a
 * key is shape-checked as it streams in, and responses above max_response_bytes are not kept.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InfernoClient } from '../sdk/src/index.js';
import { expectApiError, waitForReady } from './helpers/api-checks.js';
import { call, JWT_SECRET, login, startTestServer, type TestServer } from './helpers/server.js';
import type { AppContext } from '../server/src/http/context.js';
import { ApiError } from '../server/src/http/errors.js';
import { openRecord, recordKey } from '../server/src/http/idempotency.js';
import { readBody } from '../server/src/http/json-body.js';

const KEY_SHAPED = /inf_[A-Za-z0-9]{32,}/;

describe('Idempotency-Key records at rest', () => {
  let server: TestServer;
  let admin: string;
  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 100_000 } });
    admin = await login(server.url);
    await waitForReady(server.url);
  });
  afterAll(async () => {
    await server?.close();
  });

  const dbFile = () => path.join(server.dataDir, 'inferno.db');
  /** The database file and its WAL as bytes (latin1 keeps every byte as one character). */
  const atRest = () => [dbFile(), `${dbFile()}-wal`].filter((f) => existsSync(f)).map((f) => readFileSync(f).toString('latin1')).join('\n');
  const rows = () => {
    const db = new DatabaseSync(dbFile(), { readOnly: true });
    try {
      return db.prepare('SELECT scope, key, fingerprint, status, headers, body FROM idempotency_keys').all() as Record<string, string | number>[];
    } finally {
      db.close();
    }
  };
  const createKey = (idempotencyKey: string, name: string) =>
    call(server.url, 'POST', '/api/v1/auth/api-keys', { token: admin, headers: { 'Idempotency-Key': idempotencyKey }, body: { name, permissions: ['read_models'] } });

  it('keeps neither API key secrets nor generated text readable, and replays to the same caller', async () => {
    // The SDK sends an Idempotency-Key on its own.
    const client = new InfernoClient({ baseUrl: server.url, credentials: { username: 'admin', password: server.adminPassword } });
    const viaSdk = await client.apiKeys.create({ name: 'at-rest-sdk', permissions: ['read_models'] });
    expect(viaSdk.key).toMatch(KEY_SHAPED);
    const raw = await createKey('at-rest-raw-1', 'at-rest-raw');
    expect(raw.status).toBe(201);
    const inference = await call(server.url, 'POST', '/api/v1/inference', {
      token: admin,
      headers: { 'Idempotency-Key': 'at-rest-infer-1' },
      body: { model: 'demo-tiny', prompt: 'Tell me a long story about the sea', temperature: 0, max_tokens: 48 },
    });
    expect(inference.status).toBe(200);
    const text: string = inference.body.text;
    expect(text.length).toBeGreaterThan(16);

    const stored = rows();
    expect(stored.length).toBeGreaterThanOrEqual(3);
    expect(stored.every((r) => String(r.body).startsWith('v1.'))).toBe(true);
    // Filed under the key's hash: the raw key is not in the store.
    expect(stored.map((r) => r.key)).toContain(createHash('sha256').update('at-rest-raw-1').digest('base64url'));
    const dump = atRest();
    // Key-shaped runs at rest are only a key's stored prefix (`inf_` and 8 characters) followed by
    // the next column, its SHA-256 in hex: never a secret.
    const keyShaped = dump.match(new RegExp(KEY_SHAPED.source, 'g')) ?? [];
    for (const run of keyShaped) expect(run).toMatch(/^inf_[A-Za-z0-9]{8}[0-9a-f]{64}/);
    for (const secret of [viaSdk.key, raw.body.key]) expect(keyShaped.some((run) => run.startsWith(secret.slice(0, 28)))).toBe(false);
    expect(dump).not.toContain(viaSdk.key);
    expect(dump).not.toContain(raw.body.key);
    expect(dump).not.toContain(text);
    expect(dump).not.toContain('at-rest-raw-1');
    expect(dump).not.toContain(`/api/v1/auth/api-keys/${raw.body.id}`);

    // The same caller with the same key: the same secret, not a new key.
    const again = await createKey('at-rest-raw-1', 'at-rest-raw');
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotency-replayed')).toBe('true');
    expect(again.body).toEqual(raw.body);
    expect(again.headers.get('content-type')).toMatch(/application\/json/);
    const replayed = await call(server.url, 'POST', '/api/v1/inference', {
      token: admin,
      headers: { 'Idempotency-Key': 'at-rest-infer-1' },
      body: { model: 'demo-tiny', prompt: 'Tell me a long story about the sea', temperature: 0, max_tokens: 48 },
    });
    expect(replayed.headers.get('idempotency-replayed')).toBe('true');
    expect(replayed.body).toEqual(inference.body);
    // Another key with the same request is a new request: a new key, another secret.
    const other = await createKey('at-rest-raw-2', 'at-rest-raw');
    expect(other.status).toBe(201);
    expect(other.headers.get('idempotency-replayed')).toBeNull();
    expect(other.body.key).not.toBe(raw.body.key);
  });

  it('opens a stored record only with the same raw key and the same server secret', () => {
    const secret = Buffer.from(JWT_SECRET, 'utf8');
    const hashed = createHash('sha256').update('at-rest-raw-1').digest('base64url');
    const row = rows().find((r) => r.key === hashed)!;
    expect(row).toBeDefined();
    const scope = String(row.scope);
    const stored = { status: Number(row.status), headers: JSON.parse(String(row.headers)) as Record<string, string>, body: String(row.body) };
    expect(stored.headers).toEqual({});
    const opened = openRecord(recordKey(secret, scope, 'at-rest-raw-1'), scope, stored);
    expect(opened?.body).toMatch(KEY_SHAPED);
    expect(opened?.headers['content-type']).toMatch(/application\/json/);
    expect(openRecord(recordKey(secret, scope, 'at-rest-raw-2'), scope, stored)).toBeUndefined();
    expect(openRecord(recordKey(Buffer.alloc(48, 7), scope, 'at-rest-raw-1'), scope, stored)).toBeUndefined();
    expect(openRecord(recordKey(secret, 'user:someone-else', 'at-rest-raw-1'), 'user:someone-else', stored)).toBeUndefined();
    // The status is authenticated too: a record edited to another status does not open.
    expect(openRecord(recordKey(secret, scope, 'at-rest-raw-1'), scope, { ...stored, status: 200 })).toBeUndefined();
  });

  it('refuses a body nested too deep with a key as it streams in, before the body ends', async () => {
    const url = new URL('/api/v1/inference', server.url);
    const head = `{"model":"demo-tiny","prompt":${'['.repeat(100_000)}`;
    const total = 4 * 1024 * 1024;
    const res = await new Promise<{ status: number; body: string; sentAll: boolean }>((resolve, reject) => {
      let sentAll = false;
      const req = http.request(url, {
        method: 'POST',
        headers: { Authorization: `Bearer ${admin}`, 'Content-Type': 'application/json', 'Content-Length': total, 'Idempotency-Key': 'at-rest-deep' },
      });
      req.on('error', reject);
      req.on('response', (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => {
          resolve({ status: response.statusCode!, body, sentAll });
          req.destroy();
        });
      });
      req.write(head);
      // The rest comes slowly; the answer must not wait for it.
      let sent = head.length;
      const timer = setInterval(() => {
        if (sent >= total) {
          clearInterval(timer);
          sentAll = true;
          req.end();
          return;
        }
        const n = Math.min(64 * 1024, total - sent);
        sent += n;
        // Marked before the last bytes go: an answer after them is an answer to the whole body.
        if (sent >= total) sentAll = true;
        req.write('['.repeat(n));
      }, 200);
      req.on('close', () => clearInterval(timer));
    });
    expect(res.sentAll).toBe(false);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).error.code).toBe('VALIDATION_ERROR');
    // Nothing was claimed for the refused request.
    expect(rows().some((r) => r.key === createHash('sha256').update('at-rest-deep').digest('base64url'))).toBe(false);
  });
});

describe('Idempotency-Key: [idempotency] max_response_bytes', () => {
  let server: TestServer;
  let admin: string;
  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 100_000, 'idempotency.max_response_bytes': 100 } });
    admin = await login(server.url);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('does not keep a response larger than the limit: a repeat runs again', async () => {
    const create = (key: string, username: string) =>
      call(server.url, 'POST', '/api/v1/users', { token: admin, headers: { 'Idempotency-Key': key }, body: { username, password: 'a-long-user-password-1' } });
    const first = await create('cap-user', 'cap-user');
    expect(first.status).toBe(201);
    expect(JSON.stringify(first.body).length).toBeGreaterThan(100);
    // Not stored: the repeat runs again (and now conflicts with the user it created).
    const again = await create('cap-user', 'cap-user');
    expect(again.headers.get('idempotency-replayed')).toBeNull();
    expectApiError(again, 409, 'CONFLICT');
  });
});

describe('readBody on a body another middleware read first', () => {
  const fakeContext = (rawBody: Buffer) => {
    const headers: Record<string, string> = {};
    return {
      state: { rawBody },
      req: Readable.from([]),
      get: () => '',
      set: (name: string, value: string) => (headers[name] = value),
    } as unknown as AppContext;
  };

  it('still applies its own, tighter limit: 413', async () => {
    const ctx = fakeContext(Buffer.alloc(5000, 0x20));
    const refused = await readBody(ctx, 4096).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).code).toBe('PAYLOAD_TOO_LARGE');
    expect((await readBody(ctx, 8192)).length).toBe(5000);
  });
});
