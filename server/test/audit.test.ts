import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, createUser } from '../../test/helpers/security.js';
import { ADMIN_PASSWORD, call, JWT_SECRET, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

const USER_PASSWORD = 'audit-user-password-1';
const NEW_PASSWORD = 'audit-changed-password-2';
const GUEST_PASSWORD = 'audit-guest-password-3';
const WRONG_PASSWORD = 'audit-wrong-password-4';
/** A password typed into the username field: it must not be stored. */
const PASSWORD_AS_USERNAME = 'my secret p4ss!word';
const RPM = 20;

type AuditRecord = Awaited<ReturnType<TestServer['store']['listAudit']>>[number];

describe('audit log', () => {
  let server: TestServer;
  const secrets: string[] = [ADMIN_PASSWORD, USER_PASSWORD, NEW_PASSWORD, GUEST_PASSWORD, WRONG_PASSWORD, PASSWORD_AS_USERNAME, JWT_SECRET];
  let adminId: string;
  let userId: string;
  let guestId: string;
  let keyId: string;
  let limitedKeyId: string;
  let entries: AuditRecord[];
  const find = (action: string, predicate: (e: AuditRecord) => boolean = () => true) => entries.filter((e) => e.action === action && predicate(e));

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': RPM } });
    const adminToken = await login(server.url);
    secrets.push(adminToken);
    adminId = (await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken })).body.user.id;

    // Failed logins: a wrong password, and a password typed where the username goes.
    expect((await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: WRONG_PASSWORD } })).status).toBe(401);
    expect((await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: PASSWORD_AS_USERNAME, password: WRONG_PASSWORD } })).status).toBe(401);

    // User changes.
    userId = (await createUser(server.url, { token: adminToken }, { username: 'audited', password: USER_PASSWORD, role: 'user' })).id;
    guestId = (await createUser(server.url, { token: adminToken }, { username: 'audited-guest', password: GUEST_PASSWORD, role: 'guest' })).id;
    const patched = await call(server.url, 'PATCH', `/api/v1/users/${userId}`, {
      token: adminToken,
      body: { password: NEW_PASSWORD, role: 'guest' },
      headers: { 'X-Request-Id': 'audit-patch-1' },
    });
    expect(patched.status).toBe(200);

    // Keys: create, use, revoke.
    const key = await createApiKey(server.url, { token: adminToken }, { name: 'audited-key', permissions: ['read_models'] });
    keyId = key.id;
    secrets.push(key.key);
    expect((await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key })).status).toBe(200);
    expect((await call(server.url, 'DELETE', `/api/v1/auth/api-keys/${key.id}`, { token: adminToken })).status).toBe(204);

    // A permission denial by a guest.
    const guestToken = await login(server.url, 'audited-guest', GUEST_PASSWORD);
    secrets.push(guestToken);
    expect((await call(server.url, 'GET', '/api/v1/users', { token: guestToken })).status).toBe(403);
    // ...and a refused over-privileged key.
    expect((await call(server.url, 'POST', '/api/v1/auth/api-keys', { token: guestToken, body: { name: 'greedy', permissions: ['manage_users'] } })).status).toBe(403);

    // A rate-limit refusal, by a key of its own.
    // (With a lower limit of its own: the admin's budget, which all its keys share, goes on.)
    const limited = await createApiKey(server.url, { token: adminToken }, { name: 'limited', permissions: ['read_models'], rate_limit_per_minute: 3 });
    limitedKeyId = limited.id;
    secrets.push(limited.key);
    let last = 0;
    for (let i = 0; i <= 3; i++) last = (await call(server.url, 'GET', '/api/v1/models', { apiKey: limited.key })).status;
    expect(last).toBe(429);

    // A user that is deleted, and a logout.
    expect((await call(server.url, 'DELETE', `/api/v1/users/${guestId}`, { token: adminToken })).status).toBe(204);
    const sessionToken = await login(server.url);
    secrets.push(sessionToken);
    expect((await call(server.url, 'POST', '/api/v1/auth/logout', { token: sessionToken })).status).toBe(204);

    entries = (await server.store.listAudit({ limit: 10_000 }));
  });
  afterAll(() => server.close());

  it('records successful and failed logins', () => {
    const ok = find('auth.login', (e) => e.outcome === 'success' && e.actorUserId === adminId);
    expect(ok.length).toBeGreaterThanOrEqual(2);
    expect(ok[0]).toMatchObject({ target: 'admin', ip: '127.0.0.1' });
    const failed = find('auth.login', (e) => e.outcome === 'failure');
    expect(failed).toHaveLength(2);
    for (const e of failed) {
      expect(e.actorUserId).toBeNull();
      expect(e.ip).toBe('127.0.0.1');
    }
    expect(failed.some((e) => e.target === 'admin')).toBe(true);
  });

  it('records the logout with its actor', () => {
    const out = find('auth.logout');
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ outcome: 'success', actorUserId: adminId });
  });

  it('records key creation and revocation with actor and key id', () => {
    const created = find('api_key.create', (e) => e.outcome === 'success' && e.target === keyId);
    expect(created).toHaveLength(1);
    expect(created[0]!.actorUserId).toBe(adminId);
    const revoked = find('api_key.revoke', (e) => e.target === keyId);
    expect(revoked).toHaveLength(1);
    expect(revoked[0]).toMatchObject({ outcome: 'success', actorUserId: adminId });
  });

  it('records user create, update and delete with actor and target', () => {
    expect(find('user.create', (e) => e.target === userId)[0]).toMatchObject({ outcome: 'success', actorUserId: adminId });
    expect(find('user.create', (e) => e.target === guestId)[0]).toMatchObject({ outcome: 'success', actorUserId: adminId });
    const update = find('user.update', (e) => e.target === userId);
    expect(update).toHaveLength(1);
    expect(update[0]).toMatchObject({ outcome: 'success', actorUserId: adminId, requestId: 'audit-patch-1' });
    // What changed is named, never the value of a password.
    expect(JSON.stringify(update[0]!.details)).toContain('password');
    expect(JSON.stringify(update[0]!.details)).toContain('role');
    expect(find('user.delete', (e) => e.target === guestId)[0]).toMatchObject({ outcome: 'success', actorUserId: adminId });
  });

  it('records permission denials with the denied principal', () => {
    const denied = find('permission.denied', (e) => e.actorUserId === guestId);
    expect(denied.length).toBeGreaterThanOrEqual(1);
    expect(denied[0]!.outcome).toBe('denied');
    expect(denied[0]!.target).toContain('/api/v1/users');
    const greedy = entries.filter((e) => e.actorUserId === guestId && e.outcome === 'denied' && e.action !== 'permission.denied');
    expect(greedy.length).toBeGreaterThanOrEqual(1);
  });

  it('records the rate-limit refusal with the key and its owner', () => {
    const refused = find('rate_limit.refused');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ outcome: 'denied', actorKeyId: limitedKeyId, actorUserId: adminId, ip: '127.0.0.1' });
  });

  it('every entry has a time, an outcome and a request id (the bootstrap aside)', () => {
    for (const e of entries) {
      expect(Number.isNaN(Date.parse(e.time))).toBe(false);
      expect(['success', 'failure', 'denied']).toContain(e.outcome);
      if (!(e.action === 'user.create' && e.target === 'admin')) expect(e.requestId, e.action).toBeTruthy();
    }
  });

  it('never stores a password, API key or token in any field', () => {
    const dump = JSON.stringify(entries);
    for (const secret of secrets) {
      expect(dump.includes(secret), `secret ${secret.slice(0, 6)}… found in the audit log`).toBe(false);
    }
    // Not even recognisable pieces of them.
    for (const secret of secrets.filter((s) => s.startsWith('inf_'))) expect(dump).not.toContain(secret.slice(12));
    for (const token of secrets.filter((s) => s.startsWith('eyJ'))) expect(dump).not.toContain(token.split('.')[2]);
    expect(dump).not.toMatch(/argon2|inf_[0-9A-Za-z]{20,}|eyJ[\w-]+\.[\w-]+/);
  });
});
