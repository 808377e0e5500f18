import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

type Res = Awaited<ReturnType<typeof call>>;

const limitOf = (res: Res) => Number(res.headers.get('x-ratelimit-limit'));
const remainingOf = (res: Res) => Number(res.headers.get('x-ratelimit-remaining'));
const resetOf = (res: Res) => Number(res.headers.get('x-ratelimit-reset'));

function expectRateHeaders(res: Res, limit: number) {
  expect(res.headers.get('x-ratelimit-limit'), `status ${res.status}`).toBe(String(limit));
  expect(res.headers.get('x-ratelimit-remaining')).toMatch(/^\d+$/);
  expect(res.headers.get('x-ratelimit-reset')).toMatch(/^\d+$/);
}

function expectRefusal(res: Res, limit: number) {
  expect(res.status, JSON.stringify(res.body)).toBe(429);
  expect(res.body.error.code).toBe('RATE_LIMITED');
  expectRateHeaders(res, limit);
  expect(remainingOf(res)).toBe(0);
  const retryAfter = res.headers.get('retry-after');
  expect(retryAfter).toMatch(/^\d+$/);
  const seconds = Number(retryAfter);
  expect(seconds).toBeGreaterThan(0);
  expect(seconds).toBeLessThanOrEqual(60);
  // Retry-After points at the window's end (X-RateLimit-Reset), give or take rounding.
  const untilReset = resetOf(res) - Date.now() / 1000;
  expect(Math.abs(seconds - untilReset)).toBeLessThanOrEqual(2);
}

describe('rate limits (default 60 per minute)', () => {
  let server: TestServer;
  let adminToken: string;
  let keyA: string;
  let keyB: string;

  beforeAll(async () => {
    server = await startTestServer();
    adminToken = await login(server.url);
    keyA = (await createApiKey(server.url, { token: adminToken }, { name: 'a', permissions: ['read_models'] })).key;
    keyB = (await createApiKey(server.url, { token: adminToken }, { name: 'b', permissions: ['read_models'] })).key;
  });
  afterAll(() => server.close());

  it('60 requests pass with Remaining 59..0 and a constant Reset; the 61st is 429 with Retry-After', async () => {
    const startedSec = Date.now() / 1000;
    const remaining: number[] = [];
    const resets = new Set<number>();
    for (let i = 0; i < 60; i++) {
      const res = await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: keyA });
      expect(res.status, `request ${i + 1}`).toBe(200);
      expect(limitOf(res)).toBe(60);
      remaining.push(remainingOf(res));
      resets.add(resetOf(res));
    }
    expect(remaining).toEqual(Array.from({ length: 60 }, (_, i) => 59 - i));
    expect(resets.size).toBe(1);
    const [reset] = [...resets];
    expect(Number.isInteger(reset)).toBe(true);
    expect(reset!).toBeGreaterThanOrEqual(Math.floor(startedSec));
    expect(reset!).toBeLessThanOrEqual(Math.ceil(startedSec) + 61);

    const refused = await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: keyA });
    expectRefusal(refused, 60);
    expect(resetOf(refused)).toBe(reset);
    // Refused again: the window does not move.
    const again = await call(server.url, 'GET', '/api/v1/models', { headers: { Authorization: `Bearer ${keyA}` } });
    expectRefusal(again, 60);
    expect(resetOf(again)).toBe(reset);
  });

  it('is per principal: another key, the owner\'s JWT and the client IP keep their own budgets', async () => {
    const other = await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: keyB });
    expect(other.status).toBe(200);
    expect(remainingOf(other)).toBe(59);

    const owner = await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken });
    expect(owner.status).toBe(200);
    // The admin's JWT spent 2 (two key creations) + this one.
    expect(remainingOf(owner)).toBe(57);

    const anonymous = await call(server.url, 'GET', '/api/v1/auth/me');
    expect(anonymous.status).toBe(401);
    expectRateHeaders(anonymous, 60);
    // The IP spent 1 on the login + this one.
    expect(remainingOf(anonymous)).toBe(58);
  });

  it('401 responses carry the headers too, and bad credentials count against the IP', async () => {
    const before = remainingOf(await call(server.url, 'GET', '/api/v1/models'));
    const bad = await call(server.url, 'GET', '/api/v1/models', { apiKey: 'inf_this_is_not_a_valid_key_at_all_0000' });
    expect(bad.status).toBe(401);
    expectRateHeaders(bad, 60);
    expect(remainingOf(bad)).toBe(before - 1);
    const badJwt = await call(server.url, 'GET', '/api/v1/models', { token: 'eyJhbGciOiJIUzI1NiJ9.e30.AAAA' });
    expect(badJwt.status).toBe(401);
    expect(remainingOf(badJwt)).toBe(before - 2);
  });

  it('health probes are outside the limit', async () => {
    const res = await call(server.url, 'GET', '/health');
    expect(res.status).toBe(200);
    expect(res.headers.get('x-ratelimit-limit')).toBeNull();
  });
});

describe('rate limits: [rate_limit] requests_per_minute = 5', () => {
  let server: TestServer;
  let adminToken: string;
  let adminId: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 5 } });
    adminToken = await login(server.url); // the IP's 1st request
    adminId = (await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken })).body.user.id; // the admin's 1st
  });
  afterAll(() => server.close());

  it('unauthenticated requests share the client IP\'s budget of 5, then 429', async () => {
    const statuses: number[] = [];
    const remaining: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await call(server.url, 'GET', '/api/v1/models');
      statuses.push(res.status);
      remaining.push(remainingOf(res));
      expect(limitOf(res)).toBe(5);
    }
    expect(statuses).toEqual([401, 401, 401, 401]);
    expect(remaining).toEqual([3, 2, 1, 0]);
    expectRefusal(await call(server.url, 'GET', '/api/v1/models'), 5);
    // A login from the same IP is refused too, before any password is checked.
    expectRefusal(await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: 'whatever-password' } }), 5);
  });

  it('an authenticated user keeps their own budget meanwhile, and then runs out too', async () => {
    const remaining: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken });
      expect(res.status).toBe(200);
      remaining.push(remainingOf(res));
    }
    expect(remaining).toEqual([3, 2, 1, 0]);
    expectRefusal(await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken }), 5);
  });

  it('records the first refusal of each principal\'s window in the audit log, with the principal and IP, not every refusal', () => {
    const refusals = server.store.listAudit({ action: 'rate_limit.refused', limit: 100 });
    for (const entry of refusals) {
      expect(entry.outcome).toBe('denied');
      expect(entry.ip).toBe('127.0.0.1');
      expect(entry.requestId).toBeTruthy();
    }
    const byUser = refusals.filter((e) => e.actorUserId === adminId);
    expect(byUser.length).toBe(1);
    expect(byUser[0]!.target).toContain('/api/v1/auth/me');
    // The IP was refused twice (models, then login) in one window: one row, the first.
    const anonymous = refusals.filter((e) => e.actorUserId === null);
    expect(anonymous.length).toBe(1);
    expect(anonymous[0]!.target).toBe('GET /api/v1/models');
    expect(refusals).toHaveLength(2);
  });
});
