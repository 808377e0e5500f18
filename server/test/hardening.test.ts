// Defences found missing in a security review, each pinned by the attack that used to work.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redactText } from '../../server/src/logging/redact.js';
import { expectApiError } from '../../test/helpers/api-checks.js';
import { createApiKey, createUser } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

describe('hardening', () => {
  let server: TestServer;
  let adminToken: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000, 'server.trust_proxy': true } });
    adminToken = await login(server.url);
  });
  afterAll(() => server.close());

  it('a key with manage_users cannot create or promote a user above its own permissions', async () => {
    const manager = await createApiKey(server.url, { token: adminToken }, { name: 'hr', permissions: ['manage_users', 'read_models', 'run_inference'] });
    const admin = await call(server.url, 'POST', '/api/v1/users', { apiKey: manager.key, body: { username: 'evil', password: 'evil-password-123', role: 'admin' } });
    expect(expectApiError(admin, 403, 'PERMISSION_DENIED').message).toContain('admin role');
    const guest = await call(server.url, 'POST', '/api/v1/users', { apiKey: manager.key, body: { username: 'newguest', password: 'guest-password-123', role: 'guest' } });
    expect(guest.status).toBe(201);
    // Promoting the guest, or resetting the admin's password, is refused alike.
    expectApiError(await call(server.url, 'PATCH', `/api/v1/users/${guest.body.id}`, { apiKey: manager.key, body: { role: 'admin' } }), 403, 'PERMISSION_DENIED');
    const adminUser = (await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken })).body.user;
    expectApiError(await call(server.url, 'PATCH', `/api/v1/users/${adminUser.id}`, { apiKey: manager.key, body: { password: 'taken-over-password' } }), 403, 'PERMISSION_DENIED');
    expectApiError(await call(server.url, 'DELETE', `/api/v1/users/${adminUser.id}`, { apiKey: manager.key }), 403, 'PERMISSION_DENIED');
    expect(await login(server.url)).toBeTruthy(); // the admin's password is unchanged
  });

  it('two concurrent requests disabling the only two admins leave one of them enabled', async () => {
    const second = await createUser(server.url, { token: adminToken }, { username: 'admin2', password: 'second-admin-password', role: 'admin' });
    const adminUser = (await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken })).body.user;
    const patch = (id: string) =>
      call(server.url, 'PATCH', `/api/v1/users/${id}`, { token: adminToken, body: { disabled: true, password: 'another-password-1' } });
    const results = await Promise.all([patch(adminUser.id), patch(second.id)]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 409]);
    const enabledAdmins = (await server.store.listUsers()).filter((u) => u.role === 'admin' && !u.disabled);
    expect(enabledAdmins).toHaveLength(1);
  });

  it('concurrent creations of one username give one 201 and 409s, never a 500', async () => {
    // The admin whose PATCH was refused is the one still enabled, with its original password.
    const enabled = (await server.store.listUsers()).find((u) => u.role === 'admin' && !u.disabled)!;
    const admin = enabled.username === 'admin' ? await login(server.url) : await login(server.url, 'admin2', 'second-admin-password');
    const results = await Promise.all(
      Array.from({ length: 4 }, () => call(server.url, 'POST', '/api/v1/users', { token: admin, body: { username: 'twin', password: 'twin-password-123', role: 'guest' } })),
    );
    expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409, 409]);
  });

  it('behind a proxy, a client-written X-Forwarded-For entry does not buy a fresh rate-limit budget', async () => {
    const first = await call(server.url, 'GET', '/api/v1/models', { headers: { 'X-Forwarded-For': '10.9.9.9, 127.0.0.2' } });
    const second = await call(server.url, 'GET', '/api/v1/models', { headers: { 'X-Forwarded-For': '10.8.8.8, 127.0.0.2' } });
    // Only the proxy's own entry (the last) counts: both requests spend the same budget.
    expect(Number(second.headers.get('x-ratelimit-remaining'))).toBe(Number(first.headers.get('x-ratelimit-remaining')) - 1);
  });

  it('a login body is refused beyond 4 KB, before any password is checked', async () => {
    const res = await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: 'x'.repeat(5000) } });
    expectApiError(res, 413, 'PAYLOAD_TOO_LARGE');
  });

  it('a malformed JSON body is reported without quoting the body', async () => {
    const res = await call(server.url, 'POST', '/api/v1/auth/login', { body: '{"username":"admin","password":hunter2secret}' });
    const error = expectApiError(res, 400, 'VALIDATION_ERROR');
    expect(JSON.stringify(error)).not.toContain('hunter2');
    expect(error.details[0].message).toMatch(/^Malformed JSON/);
  });

  it('a failed login for an unknown username stores no username in the audit log (it may be a password)', async () => {
    await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'MySecretPass.2024', password: 'whatever' } });
    const failures = (await server.store.listAudit({ action: 'auth.login' })).filter((e) => e.outcome === 'failure');
    expect(JSON.stringify(failures)).not.toContain('MySecretPass');
  });

  it('audit targets and log lines are cut short and redacted, however long the path', async () => {
    const key = `inf_${'A'.repeat(40)}`;
    await call(server.url, 'GET', `/api/v1/${'x/'.repeat(3000)}${key}`);
    const row = (await server.store.listAudit({ limit: 1 }))[0];
    const lines = server.logs.filter((l) => l.includes('/api/v1/x/x/'));
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      expect(line).not.toContain(key);
      expect(line.length).toBeLessThan(6000);
    }
    expect(JSON.stringify(row)).not.toContain(key);
  });

  it('redaction still finds secrets in adversarial text, and truncates it', () => {
    expect(redactText(`x ${'eyJ'.repeat(10)}.abc.def y`)).toBe('x [REDACTED_JWT] y');
    expect(redactText('mail alice%2Btag@example.com now')).toBe('mail [REDACTED_EMAIL] now');
    const long = redactText('a'.repeat(20_000));
    expect(long.length).toBeLessThan(4200);
    expect(long.endsWith('[truncated]')).toBe(true);
  });
});

describe('hardening: audit key names, HSTS only over HTTPS, overload at warn', () => {
  let server: TestServer;
  let adminToken: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000, 'engine.parallel': 1, 'engine.max_queue': 1 } });
    adminToken = await login(server.url);
  });
  afterAll(() => server.close());

  it('a key name (free text, maybe an email address) is redacted in the audit log, as in the logs', async () => {
    const created = await createApiKey(server.url, { token: adminToken }, { name: 'ci for alice.smith@example.com', permissions: ['read_models'] });
    const entry = (await server.store.listAudit({ action: 'api_key.create', limit: 10 })).find((e) => e.target === created.id)!;
    expect(entry.details).toMatchObject({ name: 'ci for [REDACTED_EMAIL]' });
    expect(JSON.stringify(await server.store.listAudit({ limit: 100 }))).not.toContain('alice.smith');
  });

  it('plain HTTP sends no Strict-Transport-Security', async () => {
    expect((await call(server.url, 'GET', '/health')).headers.get('strict-transport-security')).toBeNull();
  });

  it('a full queue answers 503 with Retry-After, logged at warn without a stack', async () => {
    const long = { model: 'demo-tiny', prompt: 'Hello world', temperature: 0, max_tokens: 2000 };
    expect((await call(server.url, 'POST', '/api/v1/inference', { token: adminToken, body: { ...long, max_tokens: 1 } })).status).toBe(200); // loaded
    const running = call(server.url, 'POST', '/api/v1/inference', { token: adminToken, body: long });
    await new Promise((r) => setTimeout(r, 150));
    const waiting = call(server.url, 'POST', '/api/v1/inference', { token: adminToken, body: long });
    await new Promise((r) => setTimeout(r, 150));
    const refused = await call(server.url, 'POST', '/api/v1/inference', { token: adminToken, body: long });
    expectApiError(refused, 503, 'SERVICE_UNAVAILABLE');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    await Promise.all([running, waiting]);
    const requestId = refused.headers.get('x-request-id')!;
    const lines = server.logs.filter((l) => l.includes(requestId)).map((l) => JSON.parse(l));
    const refusal = lines.find((l) => l.msg === 'request refused: service unavailable');
    expect(refusal?.level).toBe('warn');
    expect(lines.some((l) => l.level === 'error')).toBe(false);
    expect(JSON.stringify(lines)).not.toContain('stack');
  });
});
