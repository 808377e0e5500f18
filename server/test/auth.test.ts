import { randomUUID } from 'node:crypto';
import jsonwebtoken from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, createUser, handMadeJwt, jwtPayload } from '../../test/helpers/security.js';
import { ADMIN_PASSWORD, call, JWT_SECRET, login, startTestServer, type TestServer } from '../../test/helpers/server.js';
import { expectApiError } from '../../test/helpers/api-checks.js';

const PASSWORD = 'a-long-user-password-1';

/** Each call's X-Forwarded-For names a fresh client address (the throttle servers trust the proxy). */
let ipCounter = 0;
const freshIp = () => ({ 'X-Forwarded-For': `10.${(ipCounter >> 16) & 255}.${(ipCounter >> 8) & 255}.${ipCounter++ & 255}` });

describe('auth: login, tokens and sessions', () => {
  let server: TestServer;
  let adminToken: string;
  let adminId: string;

  beforeAll(async () => {
    // Default login throttle (5 failures). Every failing login below comes from a fresh
    // X-Forwarded-For address, so only the tests about the throttle itself trip it.
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000, 'server.trust_proxy': true } });
    adminToken = await login(server.url);
    adminId = (await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken })).body.user.id;
  });
  afterAll(() => server.close());

  it('logs in with the right password: a token and an expiry about 24 h ahead', async () => {
    const before = Date.now();
    const res = await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD } });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['expires_at', 'token']);
    expect(res.body.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const expiresAt = Date.parse(res.body.expires_at);
    expect(Number.isNaN(expiresAt)).toBe(false);
    expect(Math.abs(expiresAt - (before + 86_400_000))).toBeLessThan(60_000);

    const header = JSON.parse(Buffer.from(res.body.token.split('.')[0], 'base64url').toString());
    expect(header.alg).toBe('HS256');
    const claims = jwtPayload(res.body.token);
    expect(claims).toMatchObject({ sub: adminId, role: 'admin', jti: expect.any(String), iat: expect.any(Number), exp: expect.any(Number) });
    expect(claims.exp - claims.iat).toBe(86_400);
    expect(claims.exp * 1000).toBe(expiresAt);
  });

  it('answers a wrong password and an unknown user identically (401 AUTHENTICATION_FAILED)', async () => {
    const wrong = await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: 'not-the-password' }, headers: freshIp() });
    const unknown = await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'nobody-here', password: 'not-the-password' }, headers: freshIp() });
    expectApiError(wrong, 401, 'AUTHENTICATION_FAILED');
    expectApiError(unknown, 401, 'AUTHENTICATION_FAILED');
    expect(unknown.body).toEqual(wrong.body);
  });

  it('takes about as long for an unknown user as for a wrong password (no user enumeration by timing)', async () => {
    await createUser(server.url, { token: adminToken }, { username: 'timing-user', password: PASSWORD, role: 'user' });
    const timed = async (username: string) => {
      const started = performance.now();
      const res = await call(server.url, 'POST', '/api/v1/auth/login', { body: { username, password: 'not-the-password' }, headers: freshIp() });
      expect(res.status).toBe(401);
      return performance.now() - started;
    };
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const wrong: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 3; i++) {
      wrong.push(await timed('timing-user'));
      unknown.push(await timed(`no-such-user-${i}`));
    }
    // A server that skips the password hash for unknown users answers them ~50x faster; allow noise.
    expect(median(unknown)).toBeGreaterThan(median(wrong) * 0.3);
  });

  it('refuses malformed JSON with 400 VALIDATION_ERROR and details', async () => {
    const res = await call(server.url, 'POST', '/api/v1/auth/login', { body: '{"username": "admin", "password": ', headers: { 'Content-Type': 'application/json' } });
    expectApiError(res, 400, 'VALIDATION_ERROR');
    expect(Array.isArray(res.body.error.details)).toBe(true);
    expect(res.body.error.details.length).toBeGreaterThan(0);
    for (const issue of res.body.error.details) expect(issue).toEqual({ path: expect.any(String), message: expect.any(String) });
  });

  it('lists every missing field in the details', async () => {
    const res = await call(server.url, 'POST', '/api/v1/auth/login', { body: {} });
    expectApiError(res, 400, 'VALIDATION_ERROR');
    const paths = res.body.error.details.map((d: { path: string }) => d.path);
    expect(paths).toEqual(expect.arrayContaining(['body.username', 'body.password']));
  });

  it('refuses a login without Content-Type (415) and with a non-JSON type (415)', async () => {
    const raw = new TextEncoder().encode(JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }));
    const none = await fetch(`${server.url}/api/v1/auth/login`, { method: 'POST', body: raw });
    expect(none.headers.get('content-type') ?? '').toMatch(/application\/json/);
    const noneBody = (await none.json()) as any;
    expect(none.status).toBe(415);
    expect(noneBody.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');

    const text = await call(server.url, 'POST', '/api/v1/auth/login', {
      body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
      headers: { 'Content-Type': 'text/plain' },
    });
    expectApiError(text, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('answers /auth/me for a JWT and for an API key', async () => {
    const byJwt = await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken });
    expect(byJwt.status).toBe(200);
    expect(byJwt.body).toMatchObject({ user: { id: adminId, username: 'admin', role: 'admin' }, auth_method: 'jwt', api_key: null });
    expect(Date.parse(byJwt.body.token_expires_at)).toBeGreaterThan(Date.now());
    expect(byJwt.body.user).not.toHaveProperty('password_hash');
    expect(byJwt.body.user).not.toHaveProperty('passwordHash');

    const key = await createApiKey(server.url, { token: adminToken }, { name: 'me-check', permissions: ['read_models'] });
    const byKey = await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: key.key });
    expect(byKey.status).toBe(200);
    expect(byKey.body).toMatchObject({ user: { id: adminId }, auth_method: 'api_key', permissions: ['read_models'], api_key: { id: key.id } });
    expect(byKey.body.api_key).not.toHaveProperty('key');
  });

  it('refuses /auth/me without credentials', async () => {
    expectApiError(await call(server.url, 'GET', '/api/v1/auth/me'), 401, 'AUTHENTICATION_FAILED');
  });

  it('logout answers 204 and the same token is refused afterwards', async () => {
    const token = await login(server.url);
    expect((await call(server.url, 'GET', '/api/v1/auth/me', { token })).status).toBe(200);
    const out = await call(server.url, 'POST', '/api/v1/auth/logout', { token });
    expect(out.status).toBe(204);
    expectApiError(await call(server.url, 'GET', '/api/v1/auth/me', { token }), 401, 'AUTHENTICATION_FAILED');
    expectApiError(await call(server.url, 'POST', '/api/v1/auth/logout', { token }), 401, 'AUTHENTICATION_FAILED');
    // Other sessions of the same user are not affected.
    expect((await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken })).status).toBe(200);
  });

  describe('forged and broken JWTs', () => {
    let claims: Record<string, any>;
    const me = (token: string) => call(server.url, 'GET', '/api/v1/auth/me', { token });

    beforeAll(() => {
      // Claims exactly like a real token's (so only the forgery differs), with a fresh jti.
      claims = { ...jwtPayload(adminToken), jti: randomUUID() };
    });

    it('control: the same claims signed HS256 with the real secret are accepted', async () => {
      const token = jsonwebtoken.sign(claims, JWT_SECRET, { algorithm: 'HS256' });
      expect((await me(token)).status).toBe(200);
    });

    it('refuses alg "none" (unsigned)', async () => {
      const token = handMadeJwt({ alg: 'none', typ: 'JWT' }, claims);
      expectApiError(await me(token), 401, 'AUTHENTICATION_FAILED');
      // ...also with a junk signature part, or "None" spelled differently.
      expectApiError(await me(handMadeJwt({ alg: 'none', typ: 'JWT' }, claims, 'x')), 401, 'AUTHENTICATION_FAILED');
      expectApiError(await me(handMadeJwt({ alg: 'NONE', typ: 'JWT' }, claims)), 401, 'AUTHENTICATION_FAILED');
    });

    it('refuses HS512 even when signed with the right secret', async () => {
      const token = jsonwebtoken.sign(claims, JWT_SECRET, { algorithm: 'HS512' });
      expectApiError(await me(token), 401, 'AUTHENTICATION_FAILED');
    });

    it('refuses HS384 signed with the right secret', async () => {
      const token = jsonwebtoken.sign(claims, JWT_SECRET, { algorithm: 'HS384' });
      expectApiError(await me(token), 401, 'AUTHENTICATION_FAILED');
    });

    it('refuses HS256 signed with a wrong secret', async () => {
      const token = jsonwebtoken.sign(claims, 'another-secret-that-is-also-32-bytes-long!!', { algorithm: 'HS256' });
      expectApiError(await me(token), 401, 'AUTHENTICATION_FAILED');
    });

    it('refuses an expired token', async () => {
      const now = Math.floor(Date.now() / 1000);
      const token = jsonwebtoken.sign({ ...claims, iat: now - 7200, exp: now - 3600 }, JWT_SECRET, { algorithm: 'HS256' });
      expectApiError(await me(token), 401, 'AUTHENTICATION_FAILED');
    });

    it('refuses a validly signed token without an expiry', async () => {
      const { exp: _exp, ...forever } = claims;
      const token = jsonwebtoken.sign(forever, JWT_SECRET, { algorithm: 'HS256' });
      expect(expectApiError(await me(token), 401, 'AUTHENTICATION_FAILED').message).toMatch(/expiry/);
      // Logging out does not make such a token usable either (it was never accepted).
      expectApiError(await call(server.url, 'POST', '/api/v1/auth/logout', { token }), 401, 'AUTHENTICATION_FAILED');
    });

    it('refuses a token for a user that does not exist', async () => {
      const token = jsonwebtoken.sign({ ...claims, sub: randomUUID() }, JWT_SECRET, { algorithm: 'HS256' });
      expectApiError(await me(token), 401, 'AUTHENTICATION_FAILED');
    });

    it('refuses a tampered payload (role raised) with the original signature', async () => {
      const guest = await createUser(server.url, { token: adminToken }, { username: 'tamper-guest', password: PASSWORD, role: 'guest' });
      const guestToken = await login(server.url, guest.username, PASSWORD);
      const [header, , signature] = guestToken.split('.');
      const raised = { ...jwtPayload(guestToken), role: 'admin' };
      const tampered = `${header}.${Buffer.from(JSON.stringify(raised)).toString('base64url')}.${signature}`;
      expectApiError(await me(tampered), 401, 'AUTHENTICATION_FAILED');
      expectApiError(await call(server.url, 'GET', '/api/v1/users', { token: tampered }), 401, 'AUTHENTICATION_FAILED');
      // The genuine token still works and carries the guest's rights only.
      const genuine = await me(guestToken);
      expect(genuine.status).toBe(200);
      expect(genuine.body.user.role).toBe('guest');
    });

    it('refuses garbage bearer values', async () => {
      for (const value of ['not-a-jwt', 'a.b.c', 'eyJhbGciOiJIUzI1NiJ9..', `${adminToken}x`]) {
        expectApiError(await me(value), 401, 'AUTHENTICATION_FAILED');
      }
    });
  });

  it('refuses Authorization: Basic', async () => {
    const basic = `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64')}`;
    const res = await call(server.url, 'GET', '/api/v1/auth/me', { headers: { Authorization: basic } });
    expectApiError(res, 401, 'AUTHENTICATION_FAILED');
  });

  it('a password change (PATCH /users/{id}) revokes the user\'s existing tokens', async () => {
    const user = await createUser(server.url, { token: adminToken }, { username: 'pw-change', password: PASSWORD, role: 'user' });
    const oldToken = await login(server.url, user.username, PASSWORD);
    expect((await call(server.url, 'GET', '/api/v1/auth/me', { token: oldToken })).status).toBe(200);

    const newPassword = 'a-brand-new-password-2';
    const patched = await call(server.url, 'PATCH', `/api/v1/users/${user.id}`, { token: adminToken, body: { password: newPassword } });
    expect(patched.status).toBe(200);

    expectApiError(await call(server.url, 'GET', '/api/v1/auth/me', { token: oldToken }), 401, 'AUTHENTICATION_FAILED');
    const oldLogin = await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: user.username, password: PASSWORD }, headers: freshIp() });
    expectApiError(oldLogin, 401, 'AUTHENTICATION_FAILED');
    const newToken = await login(server.url, user.username, newPassword);
    expect((await call(server.url, 'GET', '/api/v1/auth/me', { token: newToken })).status).toBe(200);
  });

  it('a role-only change keeps the session but applies the new rights at once', async () => {
    const user = await createUser(server.url, { token: adminToken }, { username: 'role-change', password: PASSWORD, role: 'admin' });
    const token = await login(server.url, user.username, PASSWORD);
    expect((await call(server.url, 'GET', '/api/v1/users', { token })).status).toBe(200);
    expect((await call(server.url, 'PATCH', `/api/v1/users/${user.id}`, { token: adminToken, body: { role: 'guest' } })).status).toBe(200);
    expectApiError(await call(server.url, 'GET', '/api/v1/users', { token }), 403, 'PERMISSION_DENIED');
    const me = await call(server.url, 'GET', '/api/v1/auth/me', { token });
    expect(me.status).toBe(200);
    expect([...me.body.permissions].sort()).toEqual(['read_models', 'run_inference']);
  });

  it('a disabled user cannot log in, and their tokens and API keys stop working', async () => {
    const user = await createUser(server.url, { token: adminToken }, { username: 'to-disable', password: PASSWORD, role: 'user' });
    const token = await login(server.url, user.username, PASSWORD);
    const key = await createApiKey(server.url, { token }, { name: 'soon-dead', permissions: ['read_models'] });
    expect((await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key })).status).toBe(200);

    const disabled = await call(server.url, 'PATCH', `/api/v1/users/${user.id}`, { token: adminToken, body: { disabled: true } });
    expect(disabled.status).toBe(200);
    expect(disabled.body.disabled).toBe(true);

    const attempt = await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: user.username, password: PASSWORD }, headers: freshIp() });
    expectApiError(attempt, 401, 'AUTHENTICATION_FAILED');
    // Same answer as a wrong password: a disabled account is not revealed.
    const wrong = await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: 'wrong-password-x' }, headers: freshIp() });
    expect(attempt.body).toEqual(wrong.body);

    expectApiError(await call(server.url, 'GET', '/api/v1/auth/me', { token }), 401, 'AUTHENTICATION_FAILED');
    expectApiError(await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key }), 401, 'AUTHENTICATION_FAILED');
    expectApiError(
      await call(server.url, 'GET', '/api/v1/models', { headers: { Authorization: `Bearer ${key.key}` } }),
      401,
      'AUTHENTICATION_FAILED',
    );
  });
  describe('login throttling with the default of 5 failures', () => {
    const PW = 'throttled-user-password-1';
    beforeAll(async () => {
      await createUser(server.url, { token: adminToken }, { username: 'victim', password: PW, role: 'user' });
      await createUser(server.url, { token: adminToken }, { username: 'bystander', password: PW, role: 'user' });
    });

    it('five wrong passwords from one address lock that (username, address) pair only: the right password from another address gets in', async () => {
      const attacker = freshIp();
      for (let i = 0; i < 5; i++) {
        expectApiError(await attempt(server, 'victim', 'wrong-password', attacker), 401, 'AUTHENTICATION_FAILED');
      }
      // The guessing address is stopped, even with the right password; usernames match without regard to case.
      expectThrottled(await attempt(server, 'victim', PW, attacker), 300);
      expectThrottled(await attempt(server, 'VICTIM', PW, attacker), 300);
      // The user, from anywhere else, is not locked out (only the answer may come a little later).
      expect((await attempt(server, 'victim', PW, freshIp())).status).toBe(200);
      // The attacker may still try other usernames from its address.
      expect((await attempt(server, 'bystander', PW, attacker)).status).toBe(200);
    });

    it('failures for one username from many addresses only delay its answers, never refuse the right password', async () => {
      for (let i = 0; i < 6; i++) {
        expectApiError(await attempt(server, 'victim', 'wrong-password', freshIp()), 401, 'AUTHENTICATION_FAILED');
      }
      const started = performance.now();
      const res = await attempt(server, 'victim', PW, freshIp());
      expect(res.status).toBe(200);
      // Six failures, one over the threshold: the answer was held back about 2 s (a lower bound only).
      expect(performance.now() - started).toBeGreaterThan(1500);
    });

    it('one user\'s typos on a shared address do not lock out another user of that address', async () => {
      const shared = freshIp();
      for (let i = 0; i < 5; i++) expect((await attempt(server, 'victim', 'typo-password', shared)).status).toBe(401);
      expectThrottled(await attempt(server, 'victim', PW, shared), 300);
      expect((await attempt(server, 'bystander', PW, shared)).status).toBe(200);
      expect((await attempt(server, 'bystander', 'one-typo-too', shared)).status).toBe(401);
      expect((await attempt(server, 'bystander', PW, shared)).status).toBe(200);
    });
  });
});

async function attempt(server: TestServer, username: string, password: string, ip: Record<string, string>) {
  return call(server.url, 'POST', '/api/v1/auth/login', { body: { username, password }, headers: ip });
}

function expectThrottled(res: { status: number; body: any; headers: Headers }, lockoutSeconds: number) {
  expectApiError(res, 429, 'RATE_LIMITED');
  const retryAfter = res.headers.get('retry-after');
  expect(retryAfter).toMatch(/^\d+$/);
  expect(Number(retryAfter)).toBeGreaterThan(0);
  expect(Number(retryAfter)).toBeLessThanOrEqual(lockoutSeconds);
}

describe('auth: login throttling, configured', () => {
  const PW = 'throttled-user-password-1';

  describe('with [auth] login_max_failures = 3, login_max_failures_per_address = 7', () => {
    let server: TestServer;
    let admin: string;
    beforeAll(async () => {
      server = await startTestServer({
        settings: { 'auth.login_max_failures': 3, 'auth.login_max_failures_per_address': 7, 'auth.login_lockout_seconds': 120, 'server.trust_proxy': true, 'rate_limit.requests_per_minute': 10_000 },
      });
      admin = await login(server.url);
      await createUser(server.url, { token: admin }, { username: 'three', password: PW, role: 'user' });
      await createUser(server.url, { token: admin }, { username: 'reset-me', password: PW, role: 'user' });
    });
    afterAll(() => server.close());

    it('refuses the pair\'s 4th attempt with 429 and Retry-After', async () => {
      const ip = freshIp();
      for (let i = 0; i < 3; i++) {
        expectApiError(await attempt(server, 'three', 'wrong-password', ip), 401, 'AUTHENTICATION_FAILED');
      }
      expectThrottled(await attempt(server, 'three', PW, ip), 120);
    });

    it('a successful login clears the pair\'s failures', async () => {
      const ip = freshIp();
      for (let i = 0; i < 2; i++) expect((await attempt(server, 'reset-me', 'wrong-password', ip)).status).toBe(401);
      expect((await attempt(server, 'reset-me', PW, ip)).status).toBe(200);
      for (let i = 0; i < 2; i++) expect((await attempt(server, 'reset-me', 'wrong-password', ip)).status).toBe(401);
      expect((await attempt(server, 'reset-me', PW, ip)).status).toBe(200);
    });

    it('locks an address that sprays many usernames, for every username', async () => {
      const sprayer = freshIp();
      for (let i = 0; i < 7; i++) expect((await attempt(server, `someone-${i}`, 'wrong-password', sprayer)).status).toBe(401);
      expectThrottled(await attempt(server, 'reset-me', PW, sprayer), 120);
      expect((await attempt(server, 'reset-me', PW, freshIp())).status).toBe(200);
    });

    it('a lower login_lockout_seconds (PATCH /config) shortens lockouts already running', async () => {
      const ip = freshIp();
      for (let i = 0; i < 3; i++) expect((await attempt(server, 'three', 'wrong-password', ip)).status).toBe(401);
      expectThrottled(await attempt(server, 'three', PW, ip), 120);
      const patched = await call(server.url, 'PATCH', '/api/v1/config', { token: admin, body: { auth: { login_lockout_seconds: 1 } } });
      expect(patched.status).toBe(200);
      await new Promise((r) => setTimeout(r, 1100));
      expect((await attempt(server, 'three', PW, ip)).status).toBe(200);
    });

    it('records throttled attempts in the audit log', async () => {
      const throttled = (await server.store.listAudit({ action: 'auth.login', limit: 1000 })).filter((e) => e.outcome === 'denied');
      expect(throttled.length).toBeGreaterThan(0);
      expect(throttled.some((e) => e.target === 'three')).toBe(true);
    });
  });
});
