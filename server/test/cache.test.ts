/**
 * The response cache on a real server with demo-tiny: deterministic requests (a seed, or
 * temperature 0) are answered again from memory (`X-Cache: hit`), random ones never; statistics,
 * clearing and permissions of /api/v1/cache; a replaced or deleted model never serves old answers.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { writeDemoModel } from '../src/engine/demo-model.js';
import { createApiKey, createUser } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';
import { expectApiError } from '../../test/helpers/api-checks.js';

const MODEL = 'demo-tiny';
const PASSWORD = 'a-long-user-password-1';

describe('response cache', () => {
  let server: TestServer;
  let token: string;
  let userToken: string;
  let tmp: string;
  let otherSeedBytes: Buffer;

  const infer = (body: Record<string, unknown>, auth = token) => call(server.url, 'POST', '/api/v1/inference', { token: auth, body: { model: MODEL, ...body } });
  const stats = async () => {
    const res = await call(server.url, 'GET', '/api/v1/cache', { token });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  };
  const upload = (id: string, bytes: Buffer, overwrite: boolean) =>
    fetch(`${server.url}/api/v1/models?id=${id}&overwrite=${overwrite}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream' },
      body: new Uint8Array(bytes),
    });

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'inferno-cache-test-'));
    await writeDemoModel(path.join(tmp, 'other.gguf'), { preset: 'tiny', seed: 7 });
    otherSeedBytes = readFileSync(path.join(tmp, 'other.gguf'));
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 100_000, 'engine.parallel': 2 } });
    const deadline = Date.now() + 30_000;
    while ((await call(server.url, 'GET', '/health/ready')).status !== 200) {
      if (Date.now() > deadline) throw new Error('server never became ready');
      await new Promise((r) => setTimeout(r, 50));
    }
    token = await login(server.url);
    await createUser(server.url, { token }, { username: 'plainuser', password: PASSWORD, role: 'user' });
    userToken = await login(server.url, 'plainuser', PASSWORD);
  });
  afterAll(async () => {
    await server?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('the second identical seeded request is a hit: same answer, fresh id and created, near-zero timings', async () => {
    const request = { prompt: 'Cache me if you can', seed: 42, max_tokens: 48 };
    const first = await infer(request);
    expect(first.status).toBe(200);
    expect(first.headers.get('x-cache')).toBe('miss');
    const second = await infer(request);
    expect(second.status).toBe(200);
    expect(second.headers.get('x-cache')).toBe('hit');
    expect(second.body.text).toBe(first.body.text);
    expect(second.body.usage).toEqual(first.body.usage);
    expect(second.body.finish_reason).toBe(first.body.finish_reason);
    expect(second.body.model).toBe(MODEL);
    expect(second.body.object).toBe('inference');
    expect(second.body.id).toMatch(/^inf_[0-9a-f]{32}$/);
    expect(second.body.id).not.toBe(first.body.id);
    expect(second.body.created).toBeGreaterThanOrEqual(first.body.created);
    expect(Object.keys(second.body).sort()).toEqual(Object.keys(first.body).sort());
    expect(second.body.timings).toMatchObject({ queued_ms: 0, prompt_ms: 0, generation_ms: 0, tokens_per_second: 0 });
    expect(second.body.timings.total_ms).toBeLessThan(250);

    // Any generation parameter that differs is another entry.
    for (const change of [{ max_tokens: 47 }, { seed: 43 }, { top_k: 5 }, { top_p: 0.5 }, { temperature: 0.5 }, { stop: 'zz' }, { prompt: 'Cache me if you can!' }]) {
      const other = await infer({ ...request, ...change });
      expect(other.status).toBe(200);
      expect(other.headers.get('x-cache'), JSON.stringify(change)).toBe('miss');
    }
    // Chat messages are cached too.
    const chat = { messages: [{ role: 'user', content: 'Hello' }], seed: 5, max_tokens: 16 };
    expect((await infer(chat)).headers.get('x-cache')).toBe('miss');
    expect((await infer(chat)).headers.get('x-cache')).toBe('hit');
    // Temperature 0 is deterministic without a seed.
    const greedy = { prompt: 'Greedy', temperature: 0, max_tokens: 16 };
    expect((await infer(greedy)).headers.get('x-cache')).toBe('miss');
    expect((await infer(greedy)).headers.get('x-cache')).toBe('hit');
  });

  it('random sampling (no seed, temperature above 0) and streams are never cached', async () => {
    const before = await stats();
    for (const request of [{ prompt: 'Random', temperature: 0.9, max_tokens: 8 }, { prompt: 'Random default temperature', max_tokens: 8 }]) {
      for (let i = 0; i < 2; i++) {
        const res = await infer(request);
        expect(res.status).toBe(200);
        expect(res.headers.get('x-cache')).toBe('miss');
      }
    }
    const streamed = await fetch(`${server.url}/api/v1/inference`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: 'Cache me if you can', seed: 42, max_tokens: 48, stream: true }),
    });
    expect(streamed.status).toBe(200);
    expect(streamed.headers.get('x-cache')).toBeNull();
    await streamed.text();
    const after = await stats();
    expect(after.entries).toBe(before.entries);
    expect(after.hits).toBe(before.hits);
    expect(after.misses).toBe(before.misses);
  });

  it('GET /cache counts hits and misses and shows the loaded models; DELETE clears it', async () => {
    const before = await stats();
    expect(Object.keys(before).sort()).toEqual(['enabled', 'entries', 'hit_rate', 'hits', 'loaded_models', 'max_entries', 'misses']);
    expect(before).toMatchObject({ enabled: true, max_entries: 1000 });
    expect(before.entries).toBeGreaterThan(0);
    expect(before.hit_rate).toBeCloseTo(before.hits / (before.hits + before.misses), 10);
    expect(before.loaded_models).toEqual([{ model: MODEL, busy: 0, waiting: 0, sequences: 2 }]);

    const request = { prompt: 'Counting', seed: 1, max_tokens: 8 };
    await infer(request);
    await infer(request);
    await infer(request);
    const after = await stats();
    expect(after.misses - before.misses).toBe(1);
    expect(after.hits - before.hits).toBe(2);
    expect(after.entries).toBe(before.entries + 1);

    const cleared = await call(server.url, 'DELETE', '/api/v1/cache', { token });
    expect(cleared.status).toBe(204);
    expect(cleared.body).toBeUndefined();
    const empty = await stats();
    expect(empty.entries).toBe(0);
    expect(empty.hits).toBe(after.hits); // the counters run since start
    expect((await infer(request)).headers.get('x-cache')).toBe('miss');
    expect((await infer(request)).headers.get('x-cache')).toBe('hit');

    const audit = await call(server.url, 'GET', '/api/v1/audit-logs?action=cache.clear', { token });
    expect(audit.body.data[0]).toMatchObject({ action: 'cache.clear', outcome: 'success', details: { entries: after.entries } });
  });

  it('GET and DELETE /cache need manage_cache', async () => {
    expectApiError(await call(server.url, 'GET', '/api/v1/cache', { token: userToken }), 403, 'PERMISSION_DENIED');
    expectApiError(await call(server.url, 'DELETE', '/api/v1/cache', { token: userToken }), 403, 'PERMISSION_DENIED');
    expectApiError(await call(server.url, 'GET', '/api/v1/cache'), 401, 'AUTHENTICATION_FAILED');
    const entries = (await stats()).entries;
    expect(entries).toBeGreaterThan(0); // the refused DELETE cleared nothing

    const key = await createApiKey(server.url, { token }, { name: 'cache', permissions: ['manage_cache'] });
    expect((await call(server.url, 'GET', '/api/v1/cache', { apiKey: key.key })).status).toBe(200);
    const inferOnly = await createApiKey(server.url, { token }, { name: 'infer', permissions: ['run_inference'] });
    expectApiError(await call(server.url, 'DELETE', '/api/v1/cache', { apiKey: inferOnly.key }), 403, 'PERMISSION_DENIED');
    // A hit still needs run_inference: the cache answers only requests that would be allowed.
    expectApiError(await call(server.url, 'POST', '/api/v1/inference', { apiKey: key.key, body: { model: MODEL, prompt: 'Counting', seed: 1, max_tokens: 8 } }), 403, 'PERMISSION_DENIED');
  });

  it('a replaced model file is a miss; a deleted model is 404, never a stale hit', async () => {
    const request = { prompt: 'Which weights?', seed: 3, max_tokens: 32 };
    const original = await infer(request);
    expect((await infer(request)).headers.get('x-cache')).toBe('hit');

    const replaced = await upload(MODEL, otherSeedBytes, true);
    expect(replaced.status).toBe(201);
    const fresh = await infer(request);
    expect(fresh.status).toBe(200);
    expect(fresh.headers.get('x-cache')).toBe('miss');
    expect(fresh.body.text).not.toBe(original.body.text); // other weights, other text
    expect((await infer(request)).headers.get('x-cache')).toBe('hit');

    // A second model, cached, then deleted: 404, and uploaded again under the same id: a miss.
    expect((await upload('demo-copy', otherSeedBytes, false)).status).toBe(201);
    const copy = { ...request, model: 'demo-copy' };
    expect((await infer(copy)).headers.get('x-cache')).toBe('miss');
    expect((await infer(copy)).headers.get('x-cache')).toBe('hit');
    const entries = (await stats()).entries;
    expect((await call(server.url, 'DELETE', '/api/v1/models/demo-copy', { token })).status).toBe(204);
    expect((await stats()).entries).toBe(entries - 1);
    expectApiError(await infer(copy), 404, 'NOT_FOUND');
    expect((await upload('demo-copy', otherSeedBytes, false)).status).toBe(201);
    expect((await infer(copy)).headers.get('x-cache')).toBe('miss');
  });

  it('[cache] max_entries and enabled are runtime-tunable (PATCH /config) and read from the environment', async () => {
    await call(server.url, 'DELETE', '/api/v1/cache', { token });
    const patched = await call(server.url, 'PATCH', '/api/v1/config', { token, body: { cache: { max_entries: 2 } } });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    expect(patched.body.cache).toEqual({ enabled: true, max_entries: 2 });
    try {
      for (const seed of [1, 2, 3]) expect((await infer({ prompt: 'LRU', seed, max_tokens: 4 })).headers.get('x-cache')).toBe('miss');
      expect((await stats()).entries).toBe(2);
      // The least recently used (seed 1) went; seed 3 stayed.
      expect((await infer({ prompt: 'LRU', seed: 3, max_tokens: 4 })).headers.get('x-cache')).toBe('hit');
      expect((await infer({ prompt: 'LRU', seed: 1, max_tokens: 4 })).headers.get('x-cache')).toBe('miss');

      expect((await call(server.url, 'PATCH', '/api/v1/config', { token, body: { cache: { enabled: false } } })).status).toBe(200);
      expect((await infer({ prompt: 'LRU', seed: 1, max_tokens: 4 })).headers.get('x-cache')).toBe('miss');
      expect(await stats()).toMatchObject({ enabled: false, entries: 0 });
      expectApiError(await call(server.url, 'PATCH', '/api/v1/config', { token, body: { cache: { max_entries: 0 } } }), 400, 'VALIDATION_ERROR');
    } finally {
      await call(server.url, 'PATCH', '/api/v1/config', { token, body: { cache: { enabled: true, max_entries: 1000 } } });
    }

    const config = loadConfig({ env: { INFERNO_CACHE_ENABLED: 'false', INFERNO_CACHE_MAX_ENTRIES: '5' }, cwd: tmp });
    expect(config.cache).toEqual({ enabled: false, max_entries: 5 });
    expect(loadConfig({ env: {}, cwd: tmp }).cache).toEqual({ enabled: true, max_entries: 1000 });
    expect(() => loadConfig({ env: { INFERNO_CACHE_MAX_ENTRIES: '0' }, cwd: tmp })).toThrow(/\[cache\] max_entries/);
  });
});
