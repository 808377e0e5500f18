import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { isoTimeOncePerMs } from '../src/logging/logger.js';
import { createApiKey, waitFor } from '../../test/helpers/security.js';
import { ADMIN_PASSWORD, call, JWT_SECRET, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

const USER_PASSWORD = 'redaction-user-password-1';
const WRONG_PASSWORD = 'redaction-wrong-password-2';
const EMAIL = 'someone@example.com';
const OTHER_EMAIL = 'first.last+tag@mail.example.org';

interface Sent {
  id: string;
  principal: 'admin' | 'user' | null;
  keyId?: string;
}

describe('log redaction', () => {
  let server: TestServer;
  const secrets: Record<string, string> = {
    'admin password': ADMIN_PASSWORD,
    'user password': USER_PASSWORD,
    'wrong password': WRONG_PASSWORD,
    'jwt secret': JWT_SECRET,
    email: EMAIL,
    'other email': OTHER_EMAIL,
  };
  const sent: Sent[] = [];
  let adminId: string;
  let userId: string;
  let counter = 0;

  /** A request with a known X-Request-Id, remembered with who made it. */
  async function send(method: string, route: string, options: Parameters<typeof call>[3] & { as?: Sent['principal']; keyId?: string } = {}) {
    const id = `redact-${++counter}`;
    const { as = null, keyId, ...rest } = options;
    sent.push({ id, principal: as, keyId });
    return call(server.url, method, route, { ...rest, headers: { ...rest.headers, 'X-Request-Id': id } });
  }

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000 } });

    const adminLogin = await send('POST', '/api/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD } });
    const adminToken = adminLogin.body.token as string;
    secrets['admin jwt'] = adminToken;
    const me = await send('GET', '/api/v1/auth/me', { token: adminToken, as: 'admin' });
    adminId = me.body.user.id;

    const created = await send('POST', '/api/v1/users', { token: adminToken, as: 'admin', body: { username: 'redacted-user', password: USER_PASSWORD } });
    expect(created.status).toBe(201);
    userId = created.body.id;

    const userLogin = await send('POST', '/api/v1/auth/login', { body: { username: 'redacted-user', password: USER_PASSWORD } });
    const userToken = userLogin.body.token as string;
    secrets['user jwt'] = userToken;

    const key = await createApiKey(server.url, { token: userToken }, { name: 'log-key', permissions: ['read_models'] });
    secrets['api key'] = key.key;
    secrets['api key body'] = key.key.slice(12);
    expect((await send('GET', '/api/v1/models', { apiKey: key.key, as: 'user', keyId: key.id })).status).toBe(200);
    expect((await send('GET', '/api/v1/auth/me', { headers: { Authorization: `Bearer ${key.key}` }, as: 'user', keyId: key.id })).status).toBe(200);
    expect((await send('GET', '/api/v1/models', { token: userToken, as: 'user' })).status).toBe(200);

    // Failures that carry secrets in places a careless logger would pick up.
    expect((await send('POST', '/api/v1/auth/login', { body: { username: 'admin', password: WRONG_PASSWORD } })).status).toBe(401);
    expect((await send('POST', '/api/v1/auth/login', { body: { username: EMAIL, password: WRONG_PASSWORD } })).status).toBe(401);
    expect((await send('POST', '/api/v1/auth/login', { body: `{"username":"admin","password":"${WRONG_PASSWORD}"`, headers: { 'Content-Type': 'application/json' } })).status).toBe(400);
    expect((await send('GET', '/api/v1/models', { headers: { Authorization: `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64')}` } })).status).toBe(401);
    expect((await send('GET', '/api/v1/models', { headers: { Authorization: `Basic admin:${ADMIN_PASSWORD}` } })).status).toBe(401);
    expect((await send('GET', '/api/v1/models', { apiKey: `${key.key}0` })).status).toBe(401);
    expect((await send('GET', '/api/v1/models', { token: `${userToken}x` })).status).toBe(401);

    // Email addresses in the path and in the query.
    expect((await send('GET', `/api/v1/users/${EMAIL}`, { token: adminToken, as: 'admin' })).status).toBe(400);
    expect((await send('GET', `/api/v1/users/${encodeURIComponent(EMAIL)}`, { token: adminToken, as: 'admin' })).status).toBe(400);
    expect((await send('GET', `/api/v1/auth/me?email=${EMAIL}&token=${userToken}`, { token: adminToken, as: 'admin' })).status).toBe(200);
    expect((await send('GET', `/api/v1/no-such/${OTHER_EMAIL}`, {})).status).toBe(404);
    // Credentials pasted into paths.
    expect((await send('GET', `/api/v1/no-such/${key.key}`)).status).toBe(404);
    expect((await send('GET', `/api/v1/no-such/${userToken}/x`)).status).toBe(404);
    // A secret in the query of a route that does not exist.
    expect((await send('GET', `/api/v1/nowhere?api_key=${key.key}&password=${USER_PASSWORD}`)).status).toBe(404);

    // An API key sent where a request id goes (its shape is an acceptable id).
    expect((await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key, headers: { 'X-Request-Id': key.key } })).status).toBe(200);

    // Logout and revoke.
    expect((await send('POST', '/api/v1/auth/logout', { token: userToken, as: 'user' })).status).toBe(204);
    expect((await send('DELETE', `/api/v1/auth/api-keys/${key.id}`, { token: adminToken, as: 'admin' })).status).toBe(204);
    expect((await send('GET', '/api/v1/models', { apiKey: key.key })).status).toBe(401);

    // Every request has been logged before we look.
    for (const { id } of sent) await waitFor(() => server.logs.find((l) => l.includes(`"request_id":"${id}"`)), 2_000, `log line of ${id}`);
  });
  afterAll(() => server.close());

  it('no secret appears in any log line', () => {
    expect(server.logs.length).toBeGreaterThan(sent.length);
    for (const [what, secret] of Object.entries(secrets)) {
      const leaking = server.logs.filter((line) => line.includes(secret));
      expect(leaking, `${what} leaked into the log`).toEqual([]);
    }
    const everything = server.logs.join('\n');
    // Nor anything shaped like one.
    expect(everything).not.toMatch(/inf_[0-9A-Za-z]{12,}/);
    expect(everything).not.toMatch(/eyJ[\w-]{10,}\.eyJ[\w-]{10,}/);
    expect(everything).not.toContain(Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64'));
  });

  it('an email address percent-encoded in the path (someone%40example.com) is masked too', () => {
    const leaking = server.logs.filter((line) => line.toLowerCase().includes(encodeURIComponent(EMAIL).toLowerCase()));
    expect(leaking).toEqual([]);
  });

  it('every log line is one JSON object', () => {
    for (const line of server.logs.filter((l) => l.trimStart().startsWith('{'))) expect(() => JSON.parse(line)).not.toThrow();
  });

  it('request lines carry request_id, ip, method, endpoint, status, response_time_ms, and user_id when authenticated', () => {
    for (const request of sent) {
      const line = server.logs.find((l) => l.includes(`"request_id":"${request.id}"`))!;
      const record = JSON.parse(line);
      expect(record, request.id).toMatchObject({
        request_id: request.id,
        ip: '127.0.0.1',
        method: expect.stringMatching(/^(GET|POST|DELETE|PATCH)$/),
        endpoint: expect.stringMatching(/^\/api\/v1\//),
        status: expect.any(Number),
        response_time_ms: expect.any(Number),
      });
      expect(record.time ?? record.timestamp, 'a timestamp').toBeTruthy();
      expect(record.response_time_ms).toBeGreaterThanOrEqual(0);
      const expectedUser = request.principal === 'admin' ? adminId : request.principal === 'user' ? userId : null;
      expect(record.user_id ?? null, `${request.id} user_id`).toBe(expectedUser);
      if (request.keyId) expect(record.key_id, `${request.id} key_id`).toBe(request.keyId);
      // Endpoints are paths without the query string.
      expect(record.endpoint).not.toContain('?');
    }
  });

  it('requests with secrets in the path are still logged, not dropped', () => {
    for (const request of sent) {
      const record = JSON.parse(server.logs.find((l) => l.includes(`"request_id":"${request.id}"`))!);
      expect(record.endpoint).not.toContain('@');
    }
    const masked = sent
      .map((r) => JSON.parse(server.logs.find((l) => l.includes(`"request_id":"${r.id}"`))!))
      .filter((r) => r.endpoint.startsWith('/api/v1/users/') || r.endpoint.startsWith('/api/v1/no-such/'));
    expect(masked.length).toBe(5);
  });
});

describe('log redaction of connection URLs', () => {
  it('masks the password of a database or Redis URL in any text that reaches a log line, in linear time', async () => {
    const { redactText } = await import('../src/logging/redact.js');
    expect(redactText('cannot reach redis://:pw-123@cache:6379 now')).toBe('cannot reach redis://:***@cache:6379 now');
    expect(redactText('postgres://app:hunter2-x@10.0.0.5:5432/inferno')).toBe('postgres://app:***@10.0.0.5:5432/inferno');
    expect(redactText('postgres://app:hunter2-x@db.example.com/inferno')).not.toContain('hunter2-x');
    expect(redactText('postgres://app@db:5432/inferno')).toBe('postgres://app@db:5432/inferno');
    const hostile = 'a://b:'.repeat(3000);
    const started = performance.now();
    redactText(hostile);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe('log line timestamps', () => {
  afterEach(() => vi.useRealTimers());

  it("are pino's isoTime, formatted once per millisecond", () => {
    vi.useFakeTimers({ now: Date.parse('2026-03-04T05:06:07.008Z') });
    const time = isoTimeOncePerMs();
    const first = time();
    expect(first).toBe(pino.stdTimeFunctions.isoTime());
    expect(time()).toBe(first);
    vi.advanceTimersByTime(1);
    expect(time()).toBe(',"time":"2026-03-04T05:06:07.009Z"');
    expect(time()).toBe(pino.stdTimeFunctions.isoTime());
  });
});
