import { createHash, randomUUID } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, createUser, dumpDatabase, openDb } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';
import { expectApiError } from '../../test/helpers/api-checks.js';

const PASSWORD = 'a-long-user-password-1';

describe('API keys', () => {
  let server: TestServer;
  let adminToken: string;
  let adminId: string;
  let userToken: string;
  let userId: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000 } });
    adminToken = await login(server.url);
    adminId = (await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken })).body.user.id;
    const user = await createUser(server.url, { token: adminToken }, { username: 'plain', password: PASSWORD, role: 'user' });
    userId = user.id;
    userToken = await login(server.url, 'plain', PASSWORD);
  });
  afterAll(() => server.close());

  it('creates a key (201): inf_ + at least 32 base62 characters, a 12-character prefix, shown once', async () => {
    const res = await call(server.url, 'POST', '/api/v1/auth/api-keys', {
      token: adminToken,
      body: { name: 'production-key', permissions: ['read_models', 'run_inference'], expires_in_days: 90 },
    });
    expect(res.status).toBe(201);
    const created = res.body;
    expect(created.key).toMatch(/^inf_[0-9A-Za-z]{32,}$/);
    expect(created.prefix).toBe(created.key.slice(0, 12));
    expect(created).toMatchObject({ name: 'production-key', user_id: adminId, last_used_at: null, id: expect.any(String) });
    expect([...created.permissions].sort()).toEqual(['read_models', 'run_inference']);
    const expires = Date.parse(created.expires_at);
    expect(Math.abs(expires - (Date.now() + 90 * 86_400_000))).toBeLessThan(60_000);

    const list = await call(server.url, 'GET', '/api/v1/auth/api-keys', { token: adminToken });
    expect(list.status).toBe(200);
    const listed = list.body.data.find((k: { id: string }) => k.id === created.id);
    expect(listed).toBeDefined();
    expect(listed.prefix).toBe(created.prefix);
    for (const item of list.body.data) expect(item).not.toHaveProperty('key');
    expect(JSON.stringify(list.body)).not.toContain(created.key);
    expect(JSON.stringify(list.body)).not.toContain(created.key.slice(12));
  });

  it('two keys are never alike', async () => {
    const a = await createApiKey(server.url, { token: adminToken }, { name: 'a', permissions: ['read_models'] });
    const b = await createApiKey(server.url, { token: adminToken }, { name: 'b', permissions: ['read_models'] });
    expect(a.key).not.toBe(b.key);
    expect(a.prefix).not.toBe(b.prefix);
  });

  it('works as X-API-Key and as Authorization: Bearer inf_...; last_used_at is set after use', async () => {
    const key = await createApiKey(server.url, { token: adminToken }, { name: 'usable', permissions: ['read_models'] });
    expect(key.last_used_at).toBeNull();
    const before = Date.now();

    const viaHeader = await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key });
    expect(viaHeader.status).toBe(200);
    const viaBearer = await call(server.url, 'GET', '/api/v1/auth/me', { headers: { Authorization: `Bearer ${key.key}` } });
    expect(viaBearer.status).toBe(200);
    expect(viaBearer.body).toMatchObject({ auth_method: 'api_key', api_key: { id: key.id }, user: { id: adminId } });

    const list = await call(server.url, 'GET', '/api/v1/auth/api-keys', { token: adminToken });
    const listed = list.body.data.find((k: { id: string }) => k.id === key.id);
    expect(listed.last_used_at).not.toBeNull();
    const used = Date.parse(listed.last_used_at);
    expect(used).toBeGreaterThanOrEqual(before - 1_000);
    expect(used).toBeLessThanOrEqual(Date.now() + 1_000);
  });

  it('revoke: 204, then the key is refused, and revoking again is 404', async () => {
    const key = await createApiKey(server.url, { token: adminToken }, { name: 'to-revoke', permissions: ['read_models'] });
    expect((await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key })).status).toBe(200);

    const revoked = await call(server.url, 'DELETE', `/api/v1/auth/api-keys/${key.id}`, { token: adminToken });
    expect(revoked.status).toBe(204);
    expectApiError(await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key }), 401, 'AUTHENTICATION_FAILED');
    expectApiError(
      await call(server.url, 'GET', '/api/v1/models', { headers: { Authorization: `Bearer ${key.key}` } }),
      401,
      'AUTHENTICATION_FAILED',
    );
    expectApiError(await call(server.url, 'DELETE', `/api/v1/auth/api-keys/${key.id}`, { token: adminToken }), 404, 'NOT_FOUND');
    const list = await call(server.url, 'GET', '/api/v1/auth/api-keys', { token: adminToken });
    expect(list.body.data.some((k: { id: string }) => k.id === key.id)).toBe(false);
  });

  it('revoking an unknown id is 404 and a malformed id is 400', async () => {
    expectApiError(await call(server.url, 'DELETE', `/api/v1/auth/api-keys/${randomUUID()}`, { token: adminToken }), 404, 'NOT_FOUND');
    const bad = await call(server.url, 'DELETE', '/api/v1/auth/api-keys/not-an-id', { token: adminToken });
    expectApiError(bad, 400, 'VALIDATION_ERROR');
    expect(bad.body.error.details.map((d: { path: string }) => d.path)).toContain('params.id');
  });

  it('an expired key is refused (401)', async () => {
    const key = await createApiKey(server.url, { token: adminToken }, { name: 'short-lived', permissions: ['read_models'], expires_in_days: 1 });
    expect((await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key })).status).toBe(200);
    const db = openDb(server.dataDir);
    try {
      const changed = db.prepare("UPDATE api_keys SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = ?").run(key.id);
      expect(Number(changed.changes)).toBe(1);
    } finally {
      db.close();
    }
    expectApiError(await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key }), 401, 'AUTHENTICATION_FAILED');
    expectApiError(
      await call(server.url, 'GET', '/api/v1/models', { headers: { Authorization: `Bearer ${key.key}` } }),
      401,
      'AUTHENTICATION_FAILED',
    );
  });

  it('refuses a key with permissions the creator lacks (403): a user asking for manage_users', async () => {
    const res = await call(server.url, 'POST', '/api/v1/auth/api-keys', {
      token: userToken,
      body: { name: 'greedy', permissions: ['read_models', 'manage_users'] },
    });
    expectApiError(res, 403, 'PERMISSION_DENIED');
    const mine = await call(server.url, 'GET', '/api/v1/auth/api-keys', { token: userToken });
    expect(mine.body.data.some((k: { name: string }) => k.name === 'greedy')).toBe(false);
    // Within the user's own permissions it works.
    const ok = await call(server.url, 'POST', '/api/v1/auth/api-keys', {
      token: userToken,
      body: { name: 'modest', permissions: ['read_models', 'use_streaming'] },
    });
    expect(ok.status).toBe(201);
  });

  it('refuses key management to a key without manage_users, and caps what a managing key can mint', async () => {
    const narrow = await createApiKey(server.url, { token: adminToken }, { name: 'narrow', permissions: ['read_models'] });
    // A narrow key can neither mint keys (not even as narrow as itself), nor list or revoke its owner's keys.
    for (const permissions of [['run_inference'], ['read_models']]) {
      expectApiError(await call(server.url, 'POST', '/api/v1/auth/api-keys', { apiKey: narrow.key, body: { name: 'child', permissions } }), 403, 'PERMISSION_DENIED');
    }
    expectApiError(await call(server.url, 'GET', '/api/v1/auth/api-keys', { apiKey: narrow.key }), 403, 'PERMISSION_DENIED');
    expectApiError(await call(server.url, 'DELETE', `/api/v1/auth/api-keys/${narrow.id}`, { apiKey: narrow.key }), 403, 'PERMISSION_DENIED');

    // A key with manage_users may, but never beyond its own permissions, nor past its own expiry.
    const manager = await createApiKey(server.url, { token: adminToken }, { name: 'manager', permissions: ['manage_users', 'read_models'], expires_in_days: 1 });
    const escalated = await call(server.url, 'POST', '/api/v1/auth/api-keys', { apiKey: manager.key, body: { name: 'escalated', permissions: ['run_inference'] } });
    expectApiError(escalated, 403, 'PERMISSION_DENIED');
    const child = await call(server.url, 'POST', '/api/v1/auth/api-keys', { apiKey: manager.key, body: { name: 'child', permissions: ['read_models'] } });
    expect(child.status).toBe(201);
    expect(child.body.permissions).toEqual(['read_models']);
    expect(child.body.expires_at).toBe(manager.expires_at);
  });

  it('refuses invalid create requests (400)', async () => {
    for (const body of [
      { name: 'x', permissions: [] },
      { name: 'x', permissions: ['fly_to_the_moon'] },
      { name: '', permissions: ['read_models'] },
      { name: 'x', permissions: ['read_models'], expires_in_days: 0 },
      { name: 'x', permissions: ['read_models'], expires_in_days: 1.5 },
      { name: 'x', permissions: ['read_models'], extra: true },
      { permissions: ['read_models'] },
      { name: 'x', permissions: ['read_models', 'run_inference', 'read_models'] },
    ]) {
      expectApiError(await call(server.url, 'POST', '/api/v1/auth/api-keys', { token: adminToken, body }), 400, 'VALIDATION_ERROR');
    }
  });

  it('enforces a key\'s permissions: a read_models key gets 403 on /users', async () => {
    const key = await createApiKey(server.url, { token: adminToken }, { name: 'read-only', permissions: ['read_models'] });
    expect((await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key })).status).toBe(200);
    expectApiError(await call(server.url, 'GET', '/api/v1/users', { apiKey: key.key }), 403, 'PERMISSION_DENIED');
    const full = await createApiKey(server.url, { token: adminToken }, { name: 'users-key', permissions: ['manage_users'] });
    expect((await call(server.url, 'GET', '/api/v1/users', { apiKey: full.key })).status).toBe(200);
    expectApiError(await call(server.url, 'GET', '/api/v1/models', { apiKey: full.key }), 403, 'PERMISSION_DENIED');
  });

  describe("another user's keys", () => {
    let userKey: Awaited<ReturnType<typeof createApiKey>>;
    beforeAll(async () => {
      userKey = await createApiKey(server.url, { token: userToken }, { name: 'users-own', permissions: ['read_models'] });
    });

    it('a plain user lists their own keys, not the admin\'s (403 with ?user_id=)', async () => {
      const own = await call(server.url, 'GET', '/api/v1/auth/api-keys', { token: userToken });
      expect(own.status).toBe(200);
      expect(own.body.data.every((k: { user_id: string }) => k.user_id === userId)).toBe(true);
      expect(own.body.data.some((k: { id: string }) => k.id === userKey.id)).toBe(true);
      const explicitOwn = await call(server.url, 'GET', `/api/v1/auth/api-keys?user_id=${userId}`, { token: userToken });
      expect(explicitOwn.status).toBe(200);
      expectApiError(await call(server.url, 'GET', `/api/v1/auth/api-keys?user_id=${adminId}`, { token: userToken }), 403, 'PERMISSION_DENIED');
    });

    it('a plain user cannot revoke the admin\'s key (403), and the key keeps working', async () => {
      const adminKey = await createApiKey(server.url, { token: adminToken }, { name: 'admins', permissions: ['read_models'] });
      expectApiError(await call(server.url, 'DELETE', `/api/v1/auth/api-keys/${adminKey.id}`, { token: userToken }), 403, 'PERMISSION_DENIED');
      expect((await call(server.url, 'GET', '/api/v1/models', { apiKey: adminKey.key })).status).toBe(200);
    });

    it("a plain user's API key cannot list the admin's keys either (403)", async () => {
      expectApiError(
        await call(server.url, 'GET', `/api/v1/auth/api-keys?user_id=${adminId}`, { apiKey: userKey.key }),
        403,
        'PERMISSION_DENIED',
      );
    });

    it('an admin lists and revokes another user\'s keys', async () => {
      const list = await call(server.url, 'GET', `/api/v1/auth/api-keys?user_id=${userId}`, { token: adminToken });
      expect(list.status).toBe(200);
      expect(list.body.data.some((k: { id: string }) => k.id === userKey.id)).toBe(true);
      expect(list.body.data.every((k: { user_id: string }) => k.user_id === userId)).toBe(true);
      for (const item of list.body.data) expect(item).not.toHaveProperty('key');

      expect((await call(server.url, 'DELETE', `/api/v1/auth/api-keys/${userKey.id}`, { token: adminToken })).status).toBe(204);
      expectApiError(await call(server.url, 'GET', '/api/v1/models', { apiKey: userKey.key }), 401, 'AUTHENTICATION_FAILED');
    });

    it('listing the keys of an unknown user is 404 for an admin', async () => {
      expectApiError(await call(server.url, 'GET', `/api/v1/auth/api-keys?user_id=${randomUUID()}`, { token: adminToken }), 404, 'NOT_FOUND');
    });
  });

  it('refuses invalid key formats (401)', async () => {
    const real = await createApiKey(server.url, { token: adminToken }, { name: 'shape', permissions: ['read_models'] });
    const last = real.key.at(-1)!;
    const candidates = [
      'inf_',
      'inf_short',
      'abc',
      `inf_${'A'.repeat(40)}`,
      `inf_${'!'.repeat(40)}`,
      real.key.slice(0, -1) + (last === 'a' ? 'b' : 'a'),
      real.key.slice(0, -1),
      `${real.key}x`,
      real.prefix,
      real.key.toUpperCase() === real.key ? real.key.toLowerCase() : real.key.toUpperCase(),
    ];
    for (const candidate of candidates) {
      expectApiError(await call(server.url, 'GET', '/api/v1/models', { apiKey: candidate }), 401, 'AUTHENTICATION_FAILED');
      if (!/\s/.test(candidate)) {
        expectApiError(
          await call(server.url, 'GET', '/api/v1/models', { headers: { Authorization: `Bearer ${candidate}` } }),
          401,
          'AUTHENTICATION_FAILED',
        );
      }
    }
  });

  it('stores only a SHA-256 hash and the prefix, never the raw key', async () => {
    const key = await createApiKey(server.url, { token: adminToken }, { name: 'hash-check', permissions: ['read_models'] });
    await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key });
    const secretPart = key.key.slice(12);

    const db = openDb(server.dataDir);
    let row: Record<string, unknown>;
    try {
      row = db.prepare('SELECT * FROM api_keys WHERE id = ?').get(key.id) as Record<string, unknown>;
    } finally {
      db.close();
    }
    expect(row).toBeDefined();
    for (const [column, value] of Object.entries(row)) {
      const text = String(value);
      expect(text, `column ${column}`).not.toContain(key.key);
      expect(text, `column ${column}`).not.toContain(secretPart);
    }
    const sha = createHash('sha256').update(key.key).digest();
    const encodings = [sha.toString('hex'), sha.toString('base64'), sha.toString('base64url')];
    expect(Object.values(row).some((v) => encodings.includes(String(v)))).toBe(true);
    expect(Object.values(row)).toContain(key.prefix);

    // Nowhere else in the database either (audit log included), nor in the raw files.
    const dump = dumpDatabase(server.dataDir);
    expect(dump).not.toContain(key.key);
    expect(dump).not.toContain(secretPart);
    for (const file of ['inferno.db', 'inferno.db-wal']) {
      const full = path.join(server.dataDir, file);
      if (existsSync(full)) expect(readFileSync(full).includes(Buffer.from(secretPart))).toBe(false);
    }
  });
});
