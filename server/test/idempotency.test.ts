/**
 * Idempotency-Key on the POSTs that create something: a repeat answers the stored response
 * without running again, another body under the same key and a repeat while the first runs are
 * 409, errors and streams are not stored, keys are per credential, and they survive a restart.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';
import { expectApiError, waitForReady } from '../../test/helpers/api-checks.js';

const SETTINGS = { 'rate_limit.requests_per_minute': 100_000, 'idempotency.max_keys_per_principal': 3 };

describe('Idempotency-Key', () => {
  let server: TestServer;
  let admin: string;
  beforeAll(async () => {
    server = await startTestServer({ settings: SETTINGS });
    admin = await login(server.url);
  });
  afterAll(async () => {
    await server?.close();
  });

  const createUser = (key: string, username: string, token = admin) =>
    call(server.url, 'POST', '/api/v1/users', {
      token,
      headers: { 'Idempotency-Key': key },
      body: { username, password: 'a-long-user-password-1' },
    });

  it('answers a repeat with the stored response, once created', async () => {
    const first = await createUser('k-create-1', 'idem-alice');
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotency-replayed')).toBeNull();
    const again = await createUser('k-create-1', 'idem-alice');
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get('idempotency-replayed')).toBe('true');
    expect(again.headers.get('content-type')).toMatch(/application\/json/);
    // Without a key the same request runs again, and conflicts: proof that the replay did not run it.
    const plain = await call(server.url, 'POST', '/api/v1/users', { token: admin, body: { username: 'idem-alice', password: 'a-long-user-password-1' } });
    expectApiError(plain, 409, 'CONFLICT');
    const users = await call(server.url, 'GET', '/api/v1/users', { token: admin });
    expect(users.body.data.filter((u: { username: string }) => u.username === 'idem-alice')).toHaveLength(1);
  });

  it('refuses the same key with another body (409, reused) and a malformed key (400)', async () => {
    expect((await createUser('k-create-2', 'idem-bob')).status).toBe(201);
    const other = await createUser('k-create-2', 'idem-carol');
    const error = expectApiError(other, 409, 'CONFLICT');
    expect(error.details).toEqual({ reason: 'idempotency_key_reused' });
    const bad = await createUser('with space', 'idem-dave');
    expectApiError(bad, 400, 'VALIDATION_ERROR');
    expect(bad.body.error.details[0].path).toBe('header.Idempotency-Key');
  });

  it('does not store errors: a repeat after a failure runs again', async () => {
    const invalid = await call(server.url, 'POST', '/api/v1/users', { token: admin, headers: { 'Idempotency-Key': 'k-err' }, body: { username: 'x' } });
    expectApiError(invalid, 400, 'VALIDATION_ERROR');
    const fixed = await call(server.url, 'POST', '/api/v1/users', { token: admin, headers: { 'Idempotency-Key': 'k-err' }, body: { username: 'x' } });
    expectApiError(fixed, 400, 'VALIDATION_ERROR');
    expect(fixed.headers.get('idempotency-replayed')).toBeNull();
  });

  it('keeps keys per credential: the same key from an API key is a new request', async () => {
    const key = await createApiKey(server.url, { token: admin }, { name: 'idem', permissions: ['run_inference'] });
    const body = { requests: [{ model: 'demo-tiny', prompt: 'Hi', max_tokens: 1 }] };
    const headers = { 'Idempotency-Key': 'k-job' };
    const viaToken = await call(server.url, 'POST', '/api/v1/jobs', { token: admin, headers, body });
    const viaKey = await call(server.url, 'POST', '/api/v1/jobs', { apiKey: key.key, headers, body });
    expect([viaToken.status, viaKey.status]).toEqual([202, 202]);
    expect(viaKey.headers.get('idempotency-replayed')).toBeNull();
    expect(viaKey.body.id).not.toBe(viaToken.body.id);
    const replay = await call(server.url, 'POST', '/api/v1/jobs', { apiKey: key.key, headers, body });
    expect(replay.headers.get('idempotency-replayed')).toBe('true');
    expect(replay.headers.get('location')).toBe(`/api/v1/jobs/${viaKey.body.id}`);
    expect(replay.status).toBe(202);
  });

  it('answers 409 in flight while the first request still runs, then the stored response', async () => {
    await waitForReady(server.url);
    const body = { model: 'demo-tiny', prompt: 'Hello world', temperature: 0, max_tokens: 200 };
    const headers = { 'Idempotency-Key': 'k-infer' };
    const first = call(server.url, 'POST', '/api/v1/inference', { token: admin, headers, body });
    // The first has claimed the key once its generation shows up in the cache stats.
    let during;
    for (let i = 0; i < 200; i++) {
      during = await call(server.url, 'POST', '/api/v1/inference', { token: admin, headers, body });
      if (during.status === 409) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const error = expectApiError(during!, 409, 'CONFLICT');
    expect(error.details).toEqual({ reason: 'idempotency_key_in_flight' });
    expect(during!.headers.get('retry-after')).toBe('1');
    const done = await first;
    expect(done.status).toBe(200);
    const replay = await call(server.url, 'POST', '/api/v1/inference', { token: admin, headers, body });
    expect(replay.headers.get('idempotency-replayed')).toBe('true');
    expect(replay.body).toEqual(done.body);
  });

  it('works on /v1 too, answering in the OpenAI error shape', async () => {
    const key = await createApiKey(server.url, { token: admin }, { name: 'idem-v1', permissions: ['run_inference'] });
    const headers = { Authorization: `Bearer ${key.key}`, 'Idempotency-Key': 'k-v1' };
    const first = await call(server.url, 'POST', '/v1/embeddings', { headers, body: { model: 'demo-tiny', input: 'hello' } });
    expect(first.status).toBe(200);
    const again = await call(server.url, 'POST', '/v1/embeddings', { headers, body: { model: 'demo-tiny', input: 'hello' } });
    expect(again.headers.get('idempotency-replayed')).toBe('true');
    expect(again.body).toEqual(first.body);
    const other = await call(server.url, 'POST', '/v1/embeddings', { headers, body: { model: 'demo-tiny', input: 'other' } });
    expect(other.status).toBe(409);
    expect(other.body.error).toMatchObject({ type: 'invalid_request_error', code: 'conflict' });
  });

  it('does not store event streams', async () => {
    const body = { model: 'demo-tiny', prompt: 'Hi', max_tokens: 4, stream: true, temperature: 0 };
    const headers = { 'Idempotency-Key': 'k-stream' };
    for (let i = 0; i < 2; i++) {
      const res = await call(server.url, 'POST', '/api/v1/inference', { token: admin, headers, body });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
      expect(res.headers.get('idempotency-replayed')).toBeNull();
    }
  });

  it('keeps at most max_keys_per_principal keys, forgetting the oldest', async () => {
    const token = await login(server.url);
    const make = (key: string) =>
      call(server.url, 'POST', '/api/v1/auth/api-keys', { token, headers: { 'Idempotency-Key': key }, body: { name: key, permissions: ['read_models'] } });
    const first = await make('cap-0');
    for (const key of ['cap-1', 'cap-2', 'cap-3']) expect((await make(key)).status).toBe(201);
    // The user's scope now holds cap-1..3 (and k-* keys from earlier tests were the admin user's too).
    const again = await make('cap-0');
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotency-replayed')).toBeNull();
    expect(again.body.id).not.toBe(first.body.id);
    const kept = await make('cap-3');
    expect(kept.headers.get('idempotency-replayed')).toBe('true');
  });

  it('replays across a restart (the store keeps the keys)', async () => {
    const created = await createUser('k-restart', 'idem-frank');
    expect(created.status).toBe(201);
    server = await server.restart();
    admin = await login(server.url);
    const again = await createUser('k-restart', 'idem-frank');
    expect(again.headers.get('idempotency-replayed')).toBe('true');
    expect(again.body).toEqual(created.body);
  });

  it('stores the response even when the client dropped the connection after sending', async () => {
    const payload = JSON.stringify({ username: 'idem-gina', password: 'a-long-user-password-1' });
    const url = new URL('/api/v1/users', server.url);
    await new Promise<void>((resolve) => {
      const req = http.request(url, {
        method: 'POST',
        headers: { Authorization: `Bearer ${admin}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload), 'Idempotency-Key': 'k-drop' },
      });
      req.on('error', () => resolve());
      req.end(payload, () => setTimeout(() => { req.destroy(); resolve(); }, 0));
    });
    let again;
    for (let i = 0; i < 100; i++) {
      again = await createUser('k-drop', 'idem-gina');
      if (again.status !== 409 || again.body.error.details?.reason !== 'idempotency_key_in_flight') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(again!.status).toBe(201);
    const users = await call(server.url, 'GET', '/api/v1/users', { token: admin });
    expect(users.body.data.filter((u: { username: string }) => u.username === 'idem-gina')).toHaveLength(1);
  });
});
