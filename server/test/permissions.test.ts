/**
 * The eleven permissions, one route each (two where a permission guards two surfaces): an API key
 * holding only that permission gets in, a key holding every other permission is refused with
 * 403 PERMISSION_DENIED naming it. Then the three roles: what GET /auth/me shows, and that a
 * user's or guest's JWT is let through or refused by the same table.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDemoModel } from '../src/engine/demo-model.js';
import { expectApiError, waitForReady, type ApiResponse } from '../../test/helpers/api-checks.js';
import { ALL_PERMISSIONS, createApiKey, createUser, ROLE_PERMISSIONS, type Role } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

type Permission = (typeof ALL_PERMISSIONS)[number];

const MODEL = 'demo-tiny';
/** Uploaded in beforeAll so that DELETE /models/{id} has something to delete. */
const DOOMED = 'doomed-model';
const USER_PASSWORD = 'permissions-user-password-1';
const GUEST_PASSWORD = 'permissions-guest-password-2';

interface Row {
  permission: Permission;
  method: string;
  route: string;
  body?: unknown;
  /** Other permissions the route needs as well (the allowed key gets them too). */
  alsoNeeds?: Permission[];
  /** The status an allowed call answers. */
  status: number;
  /** Extra checks on an allowed answer. */
  check?: (res: ApiResponse) => void;
}

const ROWS: Row[] = [
  { permission: 'read_models', method: 'GET', route: '/api/v1/models', status: 200, check: (res) => expect(res.body.data.map((m: { id: string }) => m.id)).toContain(MODEL) },
  { permission: 'read_models', method: 'GET', route: `/api/v1/models/${MODEL}`, status: 200, check: (res) => expect(res.body.id).toBe(MODEL) },
  { permission: 'write_models', method: 'POST', route: `/api/v1/models/${MODEL}/unload`, status: 200, check: (res) => expect(res.body).toMatchObject({ id: MODEL, loaded: false }) },
  { permission: 'delete_models', method: 'DELETE', route: `/api/v1/models/${DOOMED}`, status: 204 },
  {
    permission: 'run_inference',
    method: 'POST',
    route: '/api/v1/inference',
    body: { model: MODEL, prompt: 'Hello', max_tokens: 2, temperature: 0 },
    status: 200,
    check: (res) => expect(res.body).toMatchObject({ object: 'inference', model: MODEL }),
  },
  {
    permission: 'run_inference',
    method: 'POST',
    route: '/api/v1/embeddings',
    body: { model: MODEL, input: 'hello' },
    status: 200,
    check: (res) => expect(res.body.data[0].embedding.length).toBeGreaterThan(0),
  },
  { permission: 'manage_cache', method: 'GET', route: '/api/v1/cache', status: 200, check: (res) => expect(res.body).toHaveProperty('loaded_models') },
  { permission: 'read_metrics', method: 'GET', route: '/api/v1/metrics', status: 200, check: (res) => expect(typeof res.body.requests_total).toBe('number') },
  { permission: 'read_metrics', method: 'GET', route: '/metrics', status: 200, check: (res) => expect(res.body).toContain('# TYPE inferno_http_requests_total counter') },
  { permission: 'write_config', method: 'GET', route: '/api/v1/config', status: 200, check: (res) => expect(res.body).toHaveProperty('rate_limit') },
  { permission: 'manage_users', method: 'GET', route: '/api/v1/users', status: 200, check: (res) => expect(res.body.data.map((u: { username: string }) => u.username)).toContain('admin') },
  { permission: 'view_audit_logs', method: 'GET', route: '/api/v1/audit-logs?limit=5', status: 200, check: (res) => expect(Array.isArray(res.body.data)).toBe(true) },
  {
    permission: 'use_streaming',
    method: 'POST',
    route: '/api/v1/inference',
    body: { model: MODEL, prompt: 'Hello', max_tokens: 2, temperature: 0, stream: true },
    alsoNeeds: ['run_inference'],
    status: 200,
    check: (res) => {
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      expect(res.body).toContain('event: done');
    },
  },
  { permission: 'manage_queue', method: 'GET', route: '/api/v1/jobs?all=true', status: 200, check: (res) => expect(Array.isArray(res.body.data)).toBe(true) },
];

const label = (row: Row) => `${row.permission}: ${row.method} ${row.route}`;

describe('permissions', () => {
  let server: TestServer;
  let adminToken: string;
  let tmp: string;
  /** Per permission: a key with only it (plus alsoNeeds), and a key with every other permission. */
  const onlyKeys = new Map<Permission, { id: string; key: string }>();
  const allButKeys = new Map<Permission, { id: string; key: string }>();
  const tokens: Partial<Record<Role, string>> = {};

  const send = (row: Row, auth: { token?: string; apiKey?: string }) => call(server.url, row.method, row.route, { ...auth, body: row.body });

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'inferno-permissions-'));
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 100_000 } });
    adminToken = await login(server.url);
    tokens.admin = adminToken;

    // A model of our own to delete.
    await writeDemoModel(path.join(tmp, 'doomed.gguf'), { preset: 'tiny', seed: 11 });
    const uploaded = await fetch(`${server.url}/api/v1/models?id=${DOOMED}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${adminToken}`, 'Content-Type': 'application/octet-stream' },
      body: new Uint8Array(readFileSync(path.join(tmp, 'doomed.gguf'))),
    });
    expect(uploaded.status, await uploaded.text()).toBe(201);

    for (const permission of ALL_PERMISSIONS) {
      const extra = ROWS.find((r) => r.permission === permission)?.alsoNeeds ?? [];
      onlyKeys.set(permission, await createApiKey(server.url, { token: adminToken }, { name: `only-${permission}`, permissions: [permission, ...extra] }));
      allButKeys.set(
        permission,
        await createApiKey(server.url, { token: adminToken }, { name: `all-but-${permission}`, permissions: ALL_PERMISSIONS.filter((p) => p !== permission) }),
      );
    }

    await createUser(server.url, { token: adminToken }, { username: 'perm-user', password: USER_PASSWORD, role: 'user' });
    await createUser(server.url, { token: adminToken }, { username: 'perm-guest', password: GUEST_PASSWORD, role: 'guest' });
    tokens.user = await login(server.url, 'perm-user', USER_PASSWORD);
    tokens.guest = await login(server.url, 'perm-guest', GUEST_PASSWORD);

    await waitForReady(server.url);
  });
  afterAll(async () => {
    await server?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('the table covers all eleven permissions', () => {
    expect(new Set(ROWS.map((r) => r.permission))).toEqual(new Set(ALL_PERMISSIONS));
    expect(ALL_PERMISSIONS).toHaveLength(11);
  });

  it('the keys hold exactly what they were given', async () => {
    const only = await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: onlyKeys.get('manage_cache')!.key });
    expect(only.body.permissions).toEqual(['manage_cache']);
    const allBut = await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: allButKeys.get('manage_cache')!.key });
    expect(allBut.body.permissions).toEqual(ALL_PERMISSIONS.filter((p) => p !== 'manage_cache'));
  });

  it.each(ROWS.map((row) => [label(row), row] as const))('%s', async (_label, row) => {
    // Without credentials: 401 before any permission is looked at.
    expectApiError(await send(row, {}), 401, 'AUTHENTICATION_FAILED');

    // Every other permission, but not this one: 403 naming it (and only it).
    const allBut = allButKeys.get(row.permission)!;
    const auditBefore = (await server.store.listAudit({ action: 'permission.denied', limit: 10_000 })).length;
    const denied = expectApiError(await send(row, { apiKey: allBut.key }), 403, 'PERMISSION_DENIED');
    expect(denied.message).toMatch(new RegExp(`\\b${row.permission}\\b`));
    for (const other of ALL_PERMISSIONS.filter((p) => p !== row.permission)) expect(denied.message).not.toMatch(new RegExp(`\\b${other}\\b`));
    // The denial is in the audit log, with the key and what was missing.
    const denials = (await server.store.listAudit({ action: 'permission.denied', limit: 10_000 }));
    expect(denials.length).toBe(auditBefore + 1);
    expect(denials[0]).toMatchObject({ outcome: 'denied', actorKeyId: allBut.id, details: { missing: [row.permission] } });
    expect(denials[0]!.target).toContain(row.route.split('?')[0]);

    // Only this permission (plus what the route needs besides): allowed.
    const allowed = await send(row, { apiKey: onlyKeys.get(row.permission)!.key });
    expect(allowed.status, JSON.stringify(allowed.body)).toBe(row.status);
    row.check?.(allowed);
  });

  it('a deleted model is gone (the allowed DELETE really deleted it)', async () => {
    expectApiError(await call(server.url, 'GET', `/api/v1/models/${DOOMED}`, { token: adminToken }), 404, 'NOT_FOUND');
  });

  it('run_inference without use_streaming: the same request is 200 unstreamed and 403 streamed', async () => {
    const key = onlyKeys.get('run_inference')!.key;
    const body = { model: MODEL, prompt: 'Hello there', max_tokens: 2, temperature: 0 };
    const plain = await call(server.url, 'POST', '/api/v1/inference', { apiKey: key, body });
    expect(plain.status, JSON.stringify(plain.body)).toBe(200);
    const streamed = await call(server.url, 'POST', '/api/v1/inference', { apiKey: key, body: { ...body, stream: true } });
    const error = expectApiError(streamed, 403, 'PERMISSION_DENIED');
    expect(error.message).toContain('use_streaming');
    expect(streamed.headers.get('content-type')).toMatch(/application\/json/);
  });

  it('manage_queue is needed for everyone\'s jobs, not for one\'s own', async () => {
    const key = onlyKeys.get('run_inference')!.key;
    expect((await call(server.url, 'GET', '/api/v1/jobs', { apiKey: key })).status).toBe(200);
    const error = expectApiError(await call(server.url, 'GET', '/api/v1/jobs?all=true', { apiKey: key }), 403, 'PERMISSION_DENIED');
    expect(error.message).toContain('manage_queue');
  });

  describe('roles', () => {
    it.each(['admin', 'user', 'guest'] as const)('GET /auth/me shows the %s role\'s permissions', async (role) => {
      const me = await call(server.url, 'GET', '/api/v1/auth/me', { token: tokens[role] });
      expect(me.status).toBe(200);
      expect(me.body.user.role).toBe(role);
      expect(me.body.auth_method).toBe('jwt');
      expect([...me.body.permissions].sort()).toEqual([...ROLE_PERMISSIONS[role]].sort());
      expect([...me.body.user.permissions].sort()).toEqual([...ROLE_PERMISSIONS[role]].sort());
    });

    it('the role lists are the documented ones', () => {
      expect([...ROLE_PERMISSIONS.admin].sort()).toEqual([...ALL_PERMISSIONS].sort());
      expect([...ROLE_PERMISSIONS.user].sort()).toEqual(['read_metrics', 'read_models', 'run_inference', 'use_streaming']);
      expect([...ROLE_PERMISSIONS.guest].sort()).toEqual(['read_models', 'run_inference']);
    });

    // Every route of the table, as a user and as a guest: allowed exactly when the role has what it needs.
    const cases = (['user', 'guest'] as const).flatMap((role) => ROWS.map((row) => [role, label(row), row] as const));
    it.each(cases)('%s → %s', async (role, _label, row) => {
      const has = ROLE_PERMISSIONS[role];
      const needed = [row.permission, ...(row.alsoNeeds ?? [])];
      const res = await send(row, { token: tokens[role] });
      if (needed.every((p) => has.includes(p))) {
        expect(res.status, JSON.stringify(res.body)).toBe(row.status);
        row.check?.(res);
      } else {
        const error = expectApiError(res, 403, 'PERMISSION_DENIED');
        expect(error.message).toContain(needed.find((p) => !has.includes(p)));
      }
    });

    it('a user can stream, a guest cannot; neither can list users', async () => {
      const body = { model: MODEL, prompt: 'Once upon', max_tokens: 3, temperature: 0, stream: true };
      const userStream = await call(server.url, 'POST', '/api/v1/inference', { token: tokens.user, body });
      expect(userStream.status).toBe(200);
      expect(userStream.headers.get('content-type')).toMatch(/^text\/event-stream/);
      expect(userStream.body).toContain('event: done');

      const guestStream = await call(server.url, 'POST', '/api/v1/inference', { token: tokens.guest, body });
      expect(expectApiError(guestStream, 403, 'PERMISSION_DENIED').message).toContain('use_streaming');

      for (const role of ['user', 'guest'] as const) {
        const users = await call(server.url, 'GET', '/api/v1/users', { token: tokens[role] });
        expect(expectApiError(users, 403, 'PERMISSION_DENIED').message).toContain('manage_users');
      }
    });

    it('a key cannot carry more than its creator\'s role', async () => {
      const res = await call(server.url, 'POST', '/api/v1/auth/api-keys', { token: tokens.guest, body: { name: 'greedy', permissions: ['read_models', 'use_streaming'] } });
      expect(expectApiError(res, 403, 'PERMISSION_DENIED').message).toContain('use_streaming');
    });
  });
});
