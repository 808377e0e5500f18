import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, createUser } from '../../test/helpers/security.js';
import { expectApiError } from '../../test/helpers/api-checks.js';
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
  let aliceToken: string;
  let keyA: string;
  let keyB: string;
  let bobKey: string;

  beforeAll(async () => {
    server = await startTestServer();
    adminToken = await login(server.url); // the IP's 1st request
    await createUser(server.url, { token: adminToken }, { username: 'alice', password: 'alice-password-123', role: 'user' }); // the admin's 1st
    await createUser(server.url, { token: adminToken }, { username: 'bob', password: 'bob-password-1234', role: 'user' }); // the admin's 2nd
    aliceToken = await login(server.url, 'alice', 'alice-password-123'); // the IP's 2nd
    keyA = (await createApiKey(server.url, { token: aliceToken }, { name: 'a', permissions: ['read_models'] })).key; // alice's 1st
    keyB = (await createApiKey(server.url, { token: aliceToken }, { name: 'b', permissions: ['read_models'] })).key; // alice's 2nd
    const bobToken = await login(server.url, 'bob', 'bob-password-1234'); // the IP's 3rd
    bobKey = (await createApiKey(server.url, { token: bobToken }, { name: 'c', permissions: ['read_models'] })).key; // bob's 1st
  });
  afterAll(() => server.close());

  it('one budget per user: two keys and the session of one user share 60 a minute, with a constant Reset; then 429 with Retry-After', async () => {
    const startedSec = Date.now() / 1000;
    const remaining: number[] = [];
    const resets = new Set<number>();
    for (let i = 0; i < 58; i++) {
      const res = await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: i % 2 === 0 ? keyA : keyB });
      expect(res.status, `request ${i + 1}`).toBe(200);
      expect(limitOf(res)).toBe(60);
      remaining.push(remainingOf(res));
      resets.add(resetOf(res));
    }
    // Alice's session already spent 2 (two key creations).
    expect(remaining).toEqual(Array.from({ length: 58 }, (_, i) => 57 - i));
    expect(resets.size).toBe(1);
    const [reset] = [...resets];
    expect(Number.isInteger(reset)).toBe(true);
    expect(reset!).toBeGreaterThanOrEqual(Math.floor(startedSec));
    expect(reset!).toBeLessThanOrEqual(Math.ceil(startedSec) + 61);

    const refused = await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: keyA });
    expectRefusal(refused, 60);
    expect(resetOf(refused)).toBe(reset);
    // The other key, as a Bearer value, and the user's own session are refused alike: one budget.
    const again = await call(server.url, 'GET', '/api/v1/models', { headers: { Authorization: `Bearer ${keyB}` } });
    expectRefusal(again, 60);
    expect(resetOf(again)).toBe(reset);
    expectRefusal(await call(server.url, 'GET', '/api/v1/auth/me', { token: aliceToken }), 60);
  });

  it('other users and the client IP keep their own budgets', async () => {
    const other = await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: bobKey });
    expect(other.status).toBe(200);
    expect(remainingOf(other)).toBe(58); // bob's session spent 1 on the key

    const admin = await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken });
    expect(admin.status).toBe(200);
    expect(remainingOf(admin)).toBe(57); // two user creations + this one

    const anonymous = await call(server.url, 'GET', '/api/v1/auth/me');
    expect(anonymous.status).toBe(401);
    expectRateHeaders(anonymous, 60);
    expect(remainingOf(anonymous)).toBe(56); // three logins + this one
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

  it('records the first refusal of each principal\'s window in the audit log, with the principal and IP, not every refusal', async () => {
    const refusals = (await server.store.listAudit({ action: 'rate_limit.refused', limit: 100 }));
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

describe('rate limits: a key\'s own lower limit, and the cap on keys per user', () => {
  let server: TestServer;
  let adminToken: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'auth.max_keys_per_user': 3 } });
    adminToken = await login(server.url);
  });
  afterAll(() => server.close());

  it('a key with rate_limit_per_minute = 3 is refused at its own limit while its user goes on', async () => {
    const slow = await createApiKey(server.url, { token: adminToken }, { name: 'slow', permissions: ['read_models'], rate_limit_per_minute: 3 });
    expect(slow.rate_limit_per_minute).toBe(3);
    const remaining: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await call(server.url, 'GET', '/api/v1/models', { apiKey: slow.key });
      expect(res.status).toBe(200);
      expect(limitOf(res)).toBe(3);
      remaining.push(remainingOf(res));
    }
    expect(remaining).toEqual([2, 1, 0]);
    expectRefusal(await call(server.url, 'GET', '/api/v1/models', { apiKey: slow.key }), 3);
    // The user's own budget of 60 is spent by the key's requests too, but not by its refusal.
    const session = await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken });
    expect(session.status).toBe(200);
    expect(limitOf(session)).toBe(60);
    expect(remainingOf(session)).toBe(60 - 1 - 3 - 1);
    // The listing shows each key's own limit (null: the user's budget only).
    const listed = await call(server.url, 'GET', '/api/v1/auth/api-keys', { token: adminToken });
    expect(listed.body.data.find((k: { id: string }) => k.id === slow.id).rate_limit_per_minute).toBe(3);
  });

  it('caps the active keys of a user at [auth] max_keys_per_user: 409 CONFLICT until one is revoked', async () => {
    const made = [];
    for (let i = 0; i < 2; i++) made.push(await createApiKey(server.url, { token: adminToken }, { name: `k${i}`, permissions: ['read_models'] }));
    expect(made.every((k) => k.rate_limit_per_minute === null)).toBe(true);
    // With the "slow" key above, three are active.
    const refused = await call(server.url, 'POST', '/api/v1/auth/api-keys', { token: adminToken, body: { name: 'k3', permissions: ['read_models'] } });
    expect(expectApiError(refused, 409, 'CONFLICT').message).toContain('max_keys_per_user');
    expect((await server.store.listAudit({ action: 'api_key.create', limit: 1 }))[0]).toMatchObject({ outcome: 'denied', details: { reason: 'max_keys_per_user', active: 3, limit: 3 } });
    expect((await call(server.url, 'DELETE', `/api/v1/auth/api-keys/${made[0]!.id}`, { token: adminToken })).status).toBe(204);
    expect((await call(server.url, 'POST', '/api/v1/auth/api-keys', { token: adminToken, body: { name: 'k3', permissions: ['read_models'] } })).status).toBe(201);
  });
});

describe('rate limits: a refusal by the user budget spends nothing of the key budget', () => {
  let server: TestServer;
  let adminToken: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 6 } });
    adminToken = await login(server.url);
  });
  afterAll(() => server.close());

  it('a key refused because its user ran out is served at its own full budget once the user may go on', async () => {
    await createUser(server.url, { token: adminToken }, { username: 'rl-bob', password: 'rl-bob-password-1', role: 'user' });
    const bob = await login(server.url, 'rl-bob', 'rl-bob-password-1');
    const key = await createApiKey(server.url, { token: bob }, { name: 'bob-slow', permissions: ['read_models'], rate_limit_per_minute: 3 });
    // Bob's session spends the rest of his user budget (6 with the key creation).
    for (let i = 0; i < 5; i++) expect((await call(server.url, 'GET', '/api/v1/auth/me', { token: bob })).status).toBe(200);
    expectRefusal(await call(server.url, 'GET', '/api/v1/auth/me', { token: bob }), 6);
    // The key is refused by the user budget, more often than its own limit of 3.
    for (let i = 0; i < 4; i++) expectRefusal(await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key }), 6);
    // The admin raises the user budget in the same window: the key still has all of its own 3.
    const raised = await call(server.url, 'PATCH', '/api/v1/config', { token: adminToken, body: { rate_limit: { requests_per_minute: 100 } } });
    expect(raised.status, JSON.stringify(raised.body)).toBe(200);
    const served = await call(server.url, 'GET', '/api/v1/models', { apiKey: key.key });
    expect(served.status).toBe(200);
    expect(limitOf(served)).toBe(3);
    expect(remainingOf(served)).toBe(2);
  });
});
