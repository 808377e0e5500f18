import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALL_PERMISSIONS, createApiKey, createUser, ROLE_PERMISSIONS, type Role } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';
import { expectApiError } from '../../test/helpers/api-checks.js';

const PASSWORD = 'a-long-user-password-1';

const paths = (res: { body: any }) => (res.body.error.details as { path: string }[]).map((d) => d.path);

describe('users', () => {
  let server: TestServer;
  let adminToken: string;
  let adminId: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000 } });
    adminToken = await login(server.url);
    adminId = (await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken })).body.user.id;
  });
  afterAll(() => server.close());

  it('create (201), list, get, update (200) and delete (204)', async () => {
    const created = await call(server.url, 'POST', '/api/v1/users', { token: adminToken, body: { username: 'carol', password: PASSWORD } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id: expect.any(String), username: 'carol', role: 'user', disabled: false });
    expect(created.body.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.stringify(created.body)).not.toContain(PASSWORD);
    expect(Object.keys(created.body).some((k) => /password|hash/i.test(k))).toBe(false);
    const id = created.body.id as string;

    const list = await call(server.url, 'GET', '/api/v1/users', { token: adminToken });
    expect(list.status).toBe(200);
    expect(list.body.data.map((u: { username: string }) => u.username)).toEqual(expect.arrayContaining(['admin', 'carol']));
    expect(JSON.stringify(list.body)).not.toMatch(/argon2|password/i);

    const got = await call(server.url, 'GET', `/api/v1/users/${id}`, { token: adminToken });
    expect(got.status).toBe(200);
    expect(got.body).toEqual(created.body);

    const patched = await call(server.url, 'PATCH', `/api/v1/users/${id}`, { token: adminToken, body: { role: 'guest' } });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ id, role: 'guest' });
    expect([...patched.body.permissions].sort()).toEqual([...ROLE_PERMISSIONS.guest].sort());
    expect(Date.parse(patched.body.updated_at)).toBeGreaterThanOrEqual(Date.parse(created.body.updated_at));
    expect((await call(server.url, 'GET', `/api/v1/users/${id}`, { token: adminToken })).body.role).toBe('guest');

    const deleted = await call(server.url, 'DELETE', `/api/v1/users/${id}`, { token: adminToken });
    expect(deleted.status).toBe(204);
    expectApiError(await call(server.url, 'GET', `/api/v1/users/${id}`, { token: adminToken }), 404, 'NOT_FOUND');
    expectApiError(await call(server.url, 'DELETE', `/api/v1/users/${id}`, { token: adminToken }), 404, 'NOT_FOUND');
  });

  it('deleting a user ends their sessions and keys', async () => {
    const user = await createUser(server.url, { token: adminToken }, { username: 'doomed', password: PASSWORD, role: 'user' });
    const token = await login(server.url, 'doomed', PASSWORD);
    const key = await createApiKey(server.url, { token }, { name: 'k', permissions: ['read_models'] });
    expect((await call(server.url, 'DELETE', `/api/v1/users/${user.id}`, { token: adminToken })).status).toBe(204);
    expectApiError(await call(server.url, 'GET', '/api/v1/auth/me', { token }), 401, 'AUTHENTICATION_FAILED');
    expectApiError(await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key }), 401, 'AUTHENTICATION_FAILED');
    // The username is free again.
    expect((await call(server.url, 'POST', '/api/v1/users', { token: adminToken, body: { username: 'doomed', password: PASSWORD } })).status).toBe(201);
  });

  it('refuses a duplicate username with 409 CONFLICT, whatever the case', async () => {
    await createUser(server.url, { token: adminToken }, { username: 'Dave', password: PASSWORD });
    for (const username of ['Dave', 'dave', 'DAVE', 'ADMIN']) {
      expectApiError(await call(server.url, 'POST', '/api/v1/users', { token: adminToken, body: { username, password: PASSWORD } }), 409, 'CONFLICT');
    }
  });

  it('a bad id is 400 naming params.id; an unknown uuid is 404', async () => {
    for (const method of ['GET', 'DELETE']) {
      const bad = await call(server.url, method, '/api/v1/users/not-a-uuid', { token: adminToken });
      expectApiError(bad, 400, 'VALIDATION_ERROR');
      expect(paths(bad)).toContain('params.id');
    }
    const badPatch = await call(server.url, 'PATCH', '/api/v1/users/12345', { token: adminToken, body: { role: 'user' } });
    expectApiError(badPatch, 400, 'VALIDATION_ERROR');
    expect(paths(badPatch)).toContain('params.id');

    const unknown = randomUUID();
    expectApiError(await call(server.url, 'GET', `/api/v1/users/${unknown}`, { token: adminToken }), 404, 'NOT_FOUND');
    expectApiError(await call(server.url, 'PATCH', `/api/v1/users/${unknown}`, { token: adminToken, body: { role: 'user' } }), 404, 'NOT_FOUND');
    expectApiError(await call(server.url, 'DELETE', `/api/v1/users/${unknown}`, { token: adminToken }), 404, 'NOT_FOUND');
  });

  it('refuses an empty PATCH, unknown fields and bad values (400)', async () => {
    const user = await createUser(server.url, { token: adminToken }, { username: 'erin', password: PASSWORD });
    expectApiError(await call(server.url, 'PATCH', `/api/v1/users/${user.id}`, { token: adminToken, body: {} }), 400, 'VALIDATION_ERROR');

    const unknownPatch = await call(server.url, 'PATCH', `/api/v1/users/${user.id}`, { token: adminToken, body: { nickname: 'e' } });
    expectApiError(unknownPatch, 400, 'VALIDATION_ERROR');
    const unknownCreate = await call(server.url, 'POST', '/api/v1/users', {
      token: adminToken,
      body: { username: 'frank', password: PASSWORD, is_superuser: true },
    });
    expectApiError(unknownCreate, 400, 'VALIDATION_ERROR');
    expectApiError(await call(server.url, 'PATCH', `/api/v1/users/${user.id}`, { token: adminToken, body: { role: 'root' } }), 400, 'VALIDATION_ERROR');
    expectApiError(await call(server.url, 'PATCH', `/api/v1/users/${user.id}`, { token: adminToken, body: { disabled: 'yes' } }), 400, 'VALIDATION_ERROR');
    for (const username of ['', 'with space', 'a/b', 'x'.repeat(65)]) {
      expectApiError(await call(server.url, 'POST', '/api/v1/users', { token: adminToken, body: { username, password: PASSWORD } }), 400, 'VALIDATION_ERROR');
    }
    // Nothing was changed or created by the refused requests.
    const after = await call(server.url, 'GET', `/api/v1/users/${user.id}`, { token: adminToken });
    expect(after.body).toMatchObject({ role: 'user', disabled: false });
    const list = await call(server.url, 'GET', '/api/v1/users', { token: adminToken });
    expect(list.body.data.some((u: { username: string }) => u.username === 'frank')).toBe(false);
  });

  it('refuses a password shorter than 12 characters (400 body.password), on create and update', async () => {
    const create = await call(server.url, 'POST', '/api/v1/users', { token: adminToken, body: { username: 'weak', password: 'short-pw' } });
    expectApiError(create, 400, 'VALIDATION_ERROR');
    expect(paths(create)).toContain('body.password');
    const elevenChars = await call(server.url, 'POST', '/api/v1/users', { token: adminToken, body: { username: 'weak', password: '12345678901' } });
    expectApiError(elevenChars, 400, 'VALIDATION_ERROR');
    const twelve = await call(server.url, 'POST', '/api/v1/users', { token: adminToken, body: { username: 'weak', password: '123456789012' } });
    expect(twelve.status).toBe(201);

    const update = await call(server.url, 'PATCH', `/api/v1/users/${twelve.body.id}`, { token: adminToken, body: { password: 'short' } });
    expectApiError(update, 400, 'VALIDATION_ERROR');
    expect(paths(update)).toContain('body.password');
  });

  describe('the last admin', () => {
    it('cannot be deleted, demoted or disabled (409)', async () => {
      expectApiError(await call(server.url, 'DELETE', `/api/v1/users/${adminId}`, { token: adminToken }), 409, 'CONFLICT');
      expectApiError(await call(server.url, 'PATCH', `/api/v1/users/${adminId}`, { token: adminToken, body: { role: 'user' } }), 409, 'CONFLICT');
      expectApiError(await call(server.url, 'PATCH', `/api/v1/users/${adminId}`, { token: adminToken, body: { disabled: true } }), 409, 'CONFLICT');
      const me = await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken });
      expect(me.body.user).toMatchObject({ role: 'admin', disabled: false });
    });

    it('a disabled second admin does not count', async () => {
      const second = await createUser(server.url, { token: adminToken }, { username: 'admin-two', password: PASSWORD, role: 'admin' });
      expect((await call(server.url, 'PATCH', `/api/v1/users/${second.id}`, { token: adminToken, body: { disabled: true } })).status).toBe(200);
      expectApiError(await call(server.url, 'DELETE', `/api/v1/users/${adminId}`, { token: adminToken }), 409, 'CONFLICT');
      expectApiError(await call(server.url, 'PATCH', `/api/v1/users/${adminId}`, { token: adminToken, body: { role: 'guest' } }), 409, 'CONFLICT');
      // Re-enabled, the second admin can be demoted and deleted: the first one remains.
      expect((await call(server.url, 'PATCH', `/api/v1/users/${second.id}`, { token: adminToken, body: { disabled: false } })).status).toBe(200);
      expect((await call(server.url, 'PATCH', `/api/v1/users/${second.id}`, { token: adminToken, body: { role: 'user' } })).status).toBe(200);
      expect((await call(server.url, 'DELETE', `/api/v1/users/${second.id}`, { token: adminToken })).status).toBe(204);
    });
  });

  describe('roles', () => {
    const tokens: Partial<Record<Role, string>> = {};
    const ids: Partial<Record<Role, string>> = {};

    beforeAll(async () => {
      tokens.admin = adminToken;
      ids.admin = adminId;
      for (const role of ['user', 'guest'] as const) {
        const created = await createUser(server.url, { token: adminToken }, { username: `role-${role}`, password: PASSWORD, role });
        ids[role] = created.id;
        tokens[role] = await login(server.url, `role-${role}`, PASSWORD);
      }
    });

    it('each role carries the permissions of DESIGN.md (in /auth/me and in the user record)', async () => {
      expect(ALL_PERMISSIONS).toHaveLength(11);
      for (const role of ['admin', 'user', 'guest'] as const) {
        const me = await call(server.url, 'GET', '/api/v1/auth/me', { token: tokens[role] });
        expect(me.status).toBe(200);
        expect(me.body.user.role).toBe(role);
        expect([...me.body.permissions].sort(), role).toEqual([...ROLE_PERMISSIONS[role]].sort());
        const record = await call(server.url, 'GET', `/api/v1/users/${ids[role]}`, { token: adminToken });
        expect([...record.body.permissions].sort(), role).toEqual([...ROLE_PERMISSIONS[role]].sort());
      }
    });

    it('user and guest get 403 PERMISSION_DENIED on every /users route', async () => {
      const target = ids.guest!;
      for (const role of ['user', 'guest'] as const) {
        const token = tokens[role];
        expectApiError(await call(server.url, 'GET', '/api/v1/users', { token }), 403, 'PERMISSION_DENIED');
        expectApiError(await call(server.url, 'POST', '/api/v1/users', { token, body: { username: `sneaky-${role}`, password: PASSWORD, role: 'admin' } }), 403, 'PERMISSION_DENIED');
        expectApiError(await call(server.url, 'GET', `/api/v1/users/${target}`, { token }), 403, 'PERMISSION_DENIED');
        expectApiError(await call(server.url, 'PATCH', `/api/v1/users/${ids[role]}`, { token, body: { role: 'admin' } }), 403, 'PERMISSION_DENIED');
        expectApiError(await call(server.url, 'DELETE', `/api/v1/users/${adminId}`, { token }), 403, 'PERMISSION_DENIED');
      }
      // Nothing happened.
      const list = await call(server.url, 'GET', '/api/v1/users', { token: adminToken });
      expect(list.body.data.some((u: { username: string }) => u.username.startsWith('sneaky-'))).toBe(false);
      expect(list.body.data.find((u: { id: string }) => u.id === ids.user).role).toBe('user');
      expect(list.body.data.find((u: { id: string }) => u.id === adminId)).toBeDefined();
    });

    it('without credentials /users is 401', async () => {
      expectApiError(await call(server.url, 'GET', '/api/v1/users'), 401, 'AUTHENTICATION_FAILED');
      expectApiError(await call(server.url, 'POST', '/api/v1/users', { body: { username: 'anon', password: PASSWORD } }), 401, 'AUTHENTICATION_FAILED');
    });
  });

  it("a demoted owner's API key loses the permissions the owner lost", async () => {
    const owner = await createUser(server.url, { token: adminToken }, { username: 'owner', password: PASSWORD, role: 'admin' });
    const ownerToken = await login(server.url, 'owner', PASSWORD);
    const key = await createApiKey(server.url, { token: ownerToken }, { name: 'wide', permissions: ['manage_users', 'read_models', 'read_metrics'] });
    expect((await call(server.url, 'GET', '/api/v1/users', { apiKey: key.key })).status).toBe(200);

    expect((await call(server.url, 'PATCH', `/api/v1/users/${owner.id}`, { token: adminToken, body: { role: 'guest' } })).status).toBe(200);
    expectApiError(await call(server.url, 'GET', '/api/v1/users', { apiKey: key.key }), 403, 'PERMISSION_DENIED');
    const me = await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: key.key });
    expect(me.status).toBe(200);
    expect(me.body.permissions).toEqual(['read_models']);
    expect((await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key })).status).toBe(200);

    // Promoted again, the key's own permissions apply again (never more than it was created with).
    expect((await call(server.url, 'PATCH', `/api/v1/users/${owner.id}`, { token: adminToken, body: { role: 'admin' } })).status).toBe(200);
    const again = await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: key.key });
    expect([...again.body.permissions].sort()).toEqual(['manage_users', 'read_metrics', 'read_models']);
  });
});
