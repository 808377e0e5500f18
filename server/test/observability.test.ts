/**
 * Observability and runtime configuration over HTTP, on one real server: the audit-log query API
 * (filters, cursor pagination, validation, no secrets), the metrics (JSON and Prometheus text),
 * and GET/PATCH /api/v1/config (secrets masked, strict patches, effect, audit, persistence).
 */
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, expectApiError, expectValidationError, type ApiResponse } from '../../test/helpers/api-checks.js';
import { ALL_PERMISSIONS, createApiKey, createUser } from '../../test/helpers/security.js';
import { Scrape } from '../../test/helpers/prometheus.js';
import { ADMIN_PASSWORD, call, JWT_SECRET, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

const USER_PASSWORD = 'observability-user-password-1';
const GUEST_PASSWORD = 'observability-guest-password-2';
const WRONG_PASSWORD = 'observability-wrong-password-3';
/** Set through the environment; PATCH /config later changes it, and the persisted value must win at restart. */
// High enough for all of the admin's keys and sessions, which share one budget.
const START_RPM = 1000;

interface Entry {
  id: number;
  time: string;
  action: string;
  outcome: string;
  actor_user_id: string | null;
  actor_key_id: string | null;
  target: string | null;
  ip: string | null;
  request_id: string | null;
  details: Record<string, unknown> | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const byStatus = (m: any, status: number): number => m.responses_by_status[String(status)] ?? 0;

describe('observability and runtime config', () => {
  let server: TestServer;
  let root: string;
  let adminToken: string;
  let userToken: string;
  let adminId: string;
  let userId: string;
  let guestId: string;
  /** Keys with their own rate-limit budgets, so that sections do not starve each other. */
  let auditKey: string;
  let metricsKey: string;
  let burstKey: string;
  let admin2Id: string;
  let readerId: string;
  let noMetricsKey: string;
  let configKeys: string[];
  /** Unused until the limit drops to 7, so their first window starts after the PATCH. */
  let afterPatchAuditKey: string;
  let afterPatchKey: string;
  /** Phase marks: entries before t1, between t1 and t2, after t2. */
  let t1: string;
  let t2: string;
  const secrets: string[] = [ADMIN_PASSWORD, USER_PASSWORD, GUEST_PASSWORD, WRONG_PASSWORD, JWT_SECRET];

  const auditQuery = (query: Record<string, string | number>, apiKey = auditKey) =>
    call(server.url, 'GET', `/api/v1/audit-logs?${new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]))}`, { apiKey });
  const auditPage = async (query: Record<string, string | number>): Promise<{ data: Entry[]; next_cursor: string | null }> => {
    const res = await auditQuery(query);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  };
  /** Every page of a query, following next_cursor to the end. */
  const walk = async (query: Record<string, string | number>) => {
    const pages: { data: Entry[]; next_cursor: string | null }[] = [];
    let cursor: string | null | undefined;
    do {
      const page = await auditPage(cursor ? { ...query, cursor } : query);
      pages.push(page);
      cursor = page.next_cursor;
      expect(pages.length).toBeLessThan(200);
    } while (cursor);
    return pages;
  };
  const metrics = async (apiKey = metricsKey) => {
    const res = await call(server.url, 'GET', '/api/v1/metrics', { apiKey });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  };

  beforeAll(async () => {
    server = await startTestServer({ env: { INFERNO_RATE_LIMIT_REQUESTS_PER_MINUTE: String(START_RPM) } });
    root = path.dirname(server.dataDir);

    // Phase 1: logins (one failed), a user, keys, a permission denial.
    adminToken = await login(server.url);
    adminId = (await call(server.url, 'GET', '/api/v1/auth/me', { token: adminToken })).body.user.id;
    expect((await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: WRONG_PASSWORD } })).status).toBe(401);
    userId = (await createUser(server.url, { token: adminToken }, { username: 'obs-user', password: USER_PASSWORD, role: 'user' })).id;
    const make = async (name: string, permissions: string[], rateLimitPerMinute?: number, token = adminToken) => {
      const created = await createApiKey(server.url, { token }, { name, permissions, rate_limit_per_minute: rateLimitPerMinute });
      secrets.push(created.key);
      return created.key;
    };
    auditKey = await make('audit', ['view_audit_logs']);
    metricsKey = await make('metrics', ['read_metrics']);
    burstKey = await make('burst', ['read_models'], 5); // a limit of its own, to reach a 429 quickly
    noMetricsKey = await make('no-metrics', ALL_PERMISSIONS.filter((p) => p !== 'read_metrics'));
    configKeys = [await make('config-1', [...ALL_PERMISSIONS]), await make('config-2', [...ALL_PERMISSIONS]), await make('config-3', [...ALL_PERMISSIONS])];
    // Budgets are per user: the keys used after the PATCH below belong to users of their own.
    admin2Id = (await createUser(server.url, { token: adminToken }, { username: 'obs-admin2', password: USER_PASSWORD, role: 'admin' })).id;
    readerId = (await createUser(server.url, { token: adminToken }, { username: 'obs-reader', password: USER_PASSWORD, role: 'guest' })).id;
    afterPatchAuditKey = await make('after-patch-audit', ['view_audit_logs'], undefined, await login(server.url, 'obs-admin2', USER_PASSWORD));
    afterPatchKey = await make('after-patch', ['read_models'], undefined, await login(server.url, 'obs-reader', USER_PASSWORD));
    userToken = await login(server.url, 'obs-user', USER_PASSWORD);
    expect((await call(server.url, 'GET', '/api/v1/users', { token: userToken })).status).toBe(403);

    // Phase 2: another user; a key the user makes and revokes.
    await sleep(5);
    t1 = new Date().toISOString();
    await sleep(5);
    guestId = (await createUser(server.url, { token: adminToken }, { username: 'obs-guest', password: GUEST_PASSWORD, role: 'guest' })).id;
    const userKey = await createApiKey(server.url, { token: userToken }, { name: 'own', permissions: ['read_models'] });
    secrets.push(userKey.key);
    expect((await call(server.url, 'DELETE', `/api/v1/auth/api-keys/${userKey.id}`, { token: userToken })).status).toBe(204);
    await sleep(5);
    t2 = new Date().toISOString();
    await sleep(5);

    // Phase 3: a session that logs out.
    const session = await login(server.url, 'obs-user', USER_PASSWORD);
    expect((await call(server.url, 'POST', '/api/v1/auth/logout', { token: session })).status).toBe(204);
    secrets.push(adminToken, userToken, session);
  });
  afterAll(async () => {
    await server?.close();
    // restart() keeps the data dir, so the first server's temp root is removed here.
    if (root) rmSync(root, { recursive: true, force: true });
  });

  describe('audit-log query API', () => {
    it('answers newest first with every documented field', async () => {
      const { data, next_cursor } = await auditPage({ limit: 500 });
      expect(next_cursor).toBeNull();
      expect(data.length).toBeGreaterThanOrEqual(15);
      for (const e of data) {
        expect(Object.keys(e).sort()).toEqual(['action', 'actor_key_id', 'actor_user_id', 'details', 'id', 'ip', 'outcome', 'request_id', 'target', 'time']);
        expect(Number.isNaN(Date.parse(e.time))).toBe(false);
      }
      for (let i = 1; i < data.length; i++) {
        expect(data[i]!.id).toBeLessThan(data[i - 1]!.id);
        expect(data[i]!.time <= data[i - 1]!.time).toBe(true);
      }
      // The newest is the logout of phase 3.
      expect(data[0]).toMatchObject({ action: 'auth.logout', actor_user_id: userId });
    });

    it('filters by action', async () => {
      const { data } = await auditPage({ action: 'user.create' });
      expect(data.every((e) => e.action === 'user.create')).toBe(true);
      expect(data.map((e) => e.target).sort()).toEqual(['admin', guestId, userId, admin2Id, readerId].sort());

      const logins = (await auditPage({ action: 'auth.login' })).data;
      expect(logins.every((e) => e.action === 'auth.login')).toBe(true);
      expect(logins.filter((e) => e.outcome === 'failure')).toHaveLength(1);
      expect(logins.filter((e) => e.outcome === 'success').length).toBeGreaterThanOrEqual(3);

      expect(await auditPage({ action: 'no_such.action' })).toEqual({ data: [], next_cursor: null });
    });

    it('filters by actor (user id)', async () => {
      const { data } = await auditPage({ actor: userId });
      expect(data.length).toBeGreaterThanOrEqual(5);
      expect(data.every((e) => e.actor_user_id === userId)).toBe(true);
      expect(new Set(data.map((e) => e.action))).toEqual(new Set(['auth.login', 'permission.denied', 'api_key.create', 'api_key.revoke', 'auth.logout']));

      const admin = (await auditPage({ actor: adminId, action: 'api_key.create' })).data;
      expect(admin).toHaveLength(7);
      expect(admin.every((e) => e.actor_user_id === adminId && e.action === 'api_key.create')).toBe(true);

      expect((await auditPage({ actor: randomUUID() })).data).toEqual([]);
    });

    it('filters by since (at or after) and until (before)', async () => {
      const all = (await auditPage({ limit: 500 })).data;
      const after = (await auditPage({ since: t1, limit: 500 })).data;
      const before = (await auditPage({ until: t1, limit: 500 })).data;
      expect(after.every((e) => e.time >= t1)).toBe(true);
      expect(before.every((e) => e.time < t1)).toBe(true);
      // The two halves are the whole log, with nothing in both.
      expect([...after, ...before].map((e) => e.id)).toEqual(all.map((e) => e.id));
      expect(after.some((e) => e.action === 'user.create' && e.target === guestId)).toBe(true);
      expect(before.some((e) => e.action === 'user.create' && e.target === userId)).toBe(true);

      // Between the marks: exactly phase 2.
      const phase2 = (await auditPage({ since: t1, until: t2 })).data;
      expect(phase2.map((e) => e.action)).toEqual(['api_key.revoke', 'api_key.create', 'user.create']);
      expect(phase2[2]!.target).toBe(guestId);
      expect((await auditPage({ since: t1, until: t2, actor: userId })).data.map((e) => e.action)).toEqual(['api_key.revoke', 'api_key.create']);
      expect((await auditPage({ since: t1, until: t2, action: 'user.create' })).data).toHaveLength(1);

      // The boundaries: since is inclusive, until exclusive, to the millisecond.
      const pivot = phase2[1]!;
      const fromPivot = (await auditPage({ since: pivot.time, until: t2 })).data;
      expect(fromPivot.map((e) => e.id)).toContain(pivot.id);
      const toPivot = (await auditPage({ since: t1, until: pivot.time })).data;
      expect(toPivot.map((e) => e.id)).not.toContain(pivot.id);

      // A window in the future, or an empty one, is empty.
      expect((await auditPage({ since: new Date(Date.now() + 3_600_000).toISOString() })).data).toEqual([]);
      expect((await auditPage({ since: t2, until: t1 })).data).toEqual([]);
    });

    it('pages with limit and cursor: every entry once, newest first, ending with next_cursor null', async () => {
      const all = (await auditPage({ limit: 500 })).data;
      const pages = await walk({ limit: 3 });
      expect(pages.length).toBe(Math.ceil(all.length / 3));
      for (const page of pages.slice(0, -1)) {
        expect(page.data).toHaveLength(3);
        expect(page.next_cursor).toMatch(/^[0-9]+$/);
      }
      expect(pages.at(-1)!.next_cursor).toBeNull();
      const ids = pages.flatMap((p) => p.data.map((e) => e.id));
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids).toEqual(all.map((e) => e.id));

      // Exactly a page's worth: no further page is announced.
      expect((await auditPage({ limit: all.length })).next_cursor).toBeNull();
      const short = await auditPage({ limit: all.length - 1 });
      expect(short.next_cursor).not.toBeNull();
      expect((await auditPage({ limit: all.length, cursor: short.next_cursor! })).data.map((e) => e.id)).toEqual([all.at(-1)!.id]);

      // With a filter, page by page.
      const logins = (await auditPage({ action: 'auth.login' })).data;
      const loginPages = await walk({ action: 'auth.login', limit: 1 });
      expect(loginPages.flatMap((p) => p.data.map((e) => e.id))).toEqual(logins.map((e) => e.id));
      expect(loginPages.every((p) => p.data.every((e) => e.action === 'auth.login'))).toBe(true);

      // The default page is 100.
      expect((await auditPage({})).data.length).toBe(Math.min(100, all.length));
    });

    it.each([
      ['cursor', 'abc'],
      ['cursor', '-1'],
      ['cursor', '1.5'],
      ['cursor', '1234567890123456789'],
      ['limit', '0'],
      ['limit', '501'],
      ['limit', 'abc'],
      ['limit', '2.5'],
      ['since', 'yesterday'],
      ['since', '2024-13-01T00:00:00Z'],
      ['until', 'not-a-time'],
      ['actor', 'not-a-uuid'],
      ['action', 'DROP TABLE audit_log'],
    ])('a bad %s (%s) is 400 VALIDATION_ERROR naming the query field', async (field, value) => {
      expectValidationError(await auditQuery({ [field]: value }), `query.${field}`);
    });

    it('needs view_audit_logs', async () => {
      expectApiError(await call(server.url, 'GET', '/api/v1/audit-logs'), 401, 'AUTHENTICATION_FAILED');
      const denied = expectApiError(await call(server.url, 'GET', '/api/v1/audit-logs', { apiKey: metricsKey }), 403, 'PERMISSION_DENIED');
      expect(denied.message).toContain('view_audit_logs');
    });

    it('no password, API key, JWT or JWT secret appears in any returned entry', async () => {
      const entries = (await walk({ limit: 500 })).flatMap((p) => p.data);
      const dump = JSON.stringify(entries);
      for (const secret of secrets) expect(dump.includes(secret), `secret ${secret.slice(0, 6)}… in the audit log`).toBe(false);
      for (const key of secrets.filter((s) => s.startsWith('inf_'))) expect(dump).not.toContain(key.slice(12));
      for (const jwt of secrets.filter((s) => s.startsWith('eyJ'))) expect(dump).not.toContain(jwt.split('.')[2]);
      expect(dump).not.toMatch(/argon2|inf_[0-9A-Za-z]{20,}|eyJ[\w-]+\.[\w-]+/);
    });
  });

  describe('metrics', () => {
    it('requests_total grows by at least the requests made, and the counters agree', async () => {
      const m0 = await metrics();
      const N = 10;
      for (let i = 0; i < N; i++) expect((await call(server.url, 'GET', '/api/v1/models', { apiKey: noMetricsKey })).status).toBe(200);
      const m1 = await metrics();
      expect(m1.requests_total - m0.requests_total).toBeGreaterThanOrEqual(N);
      expect(byStatus(m1, 200) - byStatus(m0, 200)).toBeGreaterThanOrEqual(N);
      expect(m1.uptime_seconds).toBeGreaterThan(0);
      // This very request is in flight while it is answered.
      expect(m1.requests_in_flight).toBeGreaterThanOrEqual(1);
      // Every finished request has one status and one duration sample.
      const statusTotal = Object.values(m1.responses_by_status as Record<string, number>).reduce((a, b) => a + b, 0);
      expect(m1.request_duration_ms.count).toBe(statusTotal);
      expect(m1.requests_total).toBe(m1.request_duration_ms.count + m1.requests_in_flight);
    });

    it('responses_by_status counts a 404, and authentication_failures_total a 401', async () => {
      const m0 = await metrics();
      expectApiError(await call(server.url, 'GET', '/api/v1/no-such-route', { apiKey: noMetricsKey }), 404, 'NOT_FOUND');
      expectApiError(await call(server.url, 'GET', '/api/v1/models', { apiKey: 'inf_not_a_real_key_0000000000000000000000' }), 401, 'AUTHENTICATION_FAILED');
      await eventually(async () => {
        const m1 = await metrics();
        expect(byStatus(m1, 404) - byStatus(m0, 404)).toBeGreaterThanOrEqual(1);
        expect(byStatus(m1, 401) - byStatus(m0, 401)).toBeGreaterThanOrEqual(1);
        expect(m1.authentication_failures_total - m0.authentication_failures_total).toBeGreaterThanOrEqual(1);
      });
    });

    it('rate_limited_total counts a 429', async () => {
      const m0 = await metrics();
      let res: ApiResponse | undefined;
      for (let i = 0; i <= START_RPM; i++) {
        res = await call(server.url, 'GET', '/api/v1/models', { apiKey: burstKey });
        if (res.status !== 200) break;
      }
      expectApiError(res!, 429, 'RATE_LIMITED');
      await eventually(async () => {
        const m1 = await metrics();
        expect(m1.rate_limited_total - m0.rate_limited_total).toBeGreaterThanOrEqual(1);
        expect(byStatus(m1, 429) - byStatus(m0, 429)).toBeGreaterThanOrEqual(1);
      });
    });

    it('durations: p50 <= p95 <= p99, from real samples', async () => {
      const { request_duration_ms: d } = await metrics();
      expect(d.count).toBeGreaterThan(0);
      expect(d.sum).toBeGreaterThan(0);
      expect(d.p50).toBeGreaterThan(0);
      expect(d.p50).toBeLessThanOrEqual(d.p95);
      expect(d.p95).toBeLessThanOrEqual(d.p99);
      // No percentile can exceed the sum of all samples.
      expect(d.p99).toBeLessThanOrEqual(d.sum);
    });

    it('GET /metrics is Prometheus text 0.0.4 (parsed by a real parser) with the same counters', async () => {
      const json = await metrics();
      const res = await call(server.url, 'GET', '/metrics', { apiKey: metricsKey });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; ?version=0\.0\.4(;|$)/);
      expect(res.headers.get('x-ratelimit-limit')).toBe(String(START_RPM));
      const text = res.body as string;
      expect(text.endsWith('\n')).toBe(true);
      const parsed = new Scrape(text);
      expect(parsed.family('inferno_http_requests_total').type).toBe('COUNTER');
      // Every answered request of the JSON summary, plus that summary itself, is in the scrape.
      expect(parsed.value('inferno_http_requests_total')).toBe(json.request_duration_ms.count + 1);
      expect(parsed.value('inferno_http_requests_total', { status: '404' })).toBeGreaterThanOrEqual(1);
      expect(parsed.value('inferno_rate_limited_total')).toBe(json.rate_limited_total);
      expect(parsed.value('inferno_authentication_failures_total')).toBe(json.authentication_failures_total);
      expect(parsed.count('inferno_http_request_duration_seconds')).toBe(json.request_duration_ms.count + 1);
      // This scrape is in flight while it is answered.
      expect(parsed.value('inferno_http_requests_in_flight')).toBeGreaterThanOrEqual(1);
    });

    it('a Prometheus scraper can send the key as a Bearer token', async () => {
      const res = await call(server.url, 'GET', '/metrics', { headers: { Authorization: `Bearer ${metricsKey}` } });
      expect(res.status).toBe(200);
      expect(new Scrape(res.body).family('inferno_http_requests_total').type).toBe('COUNTER');
    });

    // The router matches paths case-insensitively and with a trailing slash; the authentication and
    // rate-limit middleware must then apply to those spellings too (or they must not be routes).
    it.each(['/metrics/', '/METRICS', '/API/V1/metrics', '/Api/v1/metrics'])('%s is the metrics route with its checks, or no route', async (route) => {
      const res = await call(server.url, 'GET', route, { apiKey: metricsKey });
      if (res.status === 404) return;
      expect(res.status, `${route}: a valid read_metrics key was answered ${res.status} ${JSON.stringify(res.body)}`).toBe(200);
      expect(res.headers.get('x-ratelimit-limit'), `${route}: no rate-limit headers`).toBe(String(START_RPM));
    });

    it('a login at a differently spelled path is still rate-limited (or is no route)', async () => {
      const res = await call(server.url, 'POST', '/API/V1/auth/login', { body: { username: 'nobody-here', password: WRONG_PASSWORD } });
      if (res.status === 404) return;
      expect(res.headers.get('x-ratelimit-limit'), `POST /API/V1/auth/login answered ${res.status} outside the rate limiter`).toBe(String(START_RPM));
    });

    it('both need read_metrics', async () => {
      for (const route of ['/api/v1/metrics', '/metrics']) {
        expectApiError(await call(server.url, 'GET', route), 401, 'AUTHENTICATION_FAILED');
        const denied = expectApiError(await call(server.url, 'GET', route, { apiKey: noMetricsKey }), 403, 'PERMISSION_DENIED');
        expect(denied.message, route).toContain('read_metrics');
      }
    });
  });

  describe('config', () => {
    const getConfig = async (apiKey = configKeys[0]!) => {
      const res = await call(server.url, 'GET', '/api/v1/config', { apiKey });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res;
    };
    const patch = (body: unknown, apiKey = configKeys[0]!) => call(server.url, 'PATCH', '/api/v1/config', { apiKey, body });
    const configUpdates = () => server.store.listAudit({ action: 'config.update', limit: 1000 });

    it('GET shows every section and never a secret', async () => {
      const res = await getConfig();
      const config = res.body;
      for (const section of ['server', 'auth', 'rate_limit', 'idempotency', 'limits', 'models', 'engine', 'storage', 'logging', 'cache', 'metrics', 'usage', 'tracing']) {
        expect(config, section).toHaveProperty(section);
        expect(typeof config[section]).toBe('object');
      }
      expect(config.rate_limit).toEqual({ enabled: true, requests_per_minute: START_RPM, window_seconds: 60 });
      expect(config.logging.level).toBe('info');
      expect(['(set)', null]).toContain(config.auth.jwt_secret);
      expect(['(set)', null]).toContain(config.auth.admin_password);
      expect(config.auth.jwt_secret).toBe('(set)');
      expect(config.auth.admin_password).toBe('(set)');
      const text = JSON.stringify(config);
      expect(text).not.toContain(ADMIN_PASSWORD);
      expect(text).not.toContain(JWT_SECRET);
      expect(text).not.toContain(JWT_SECRET.slice(0, 16));
    });

    it.each([
      [{ rate_limit: { bogus: 1 } }, 'body.rate_limit.bogus'],
      [{ server: { port: 1 } }, 'body.server'],
      [{ rate_limit: { requests_per_minute: 9, bogus: 1 } }, 'body.rate_limit.bogus'],
      [{ logging: { level: 'debug', format: 'pretty' } }, 'body.logging.format'],
      [{ auth: { jwt_secret: 'a-new-jwt-secret-that-is-long-enough-0123456789' } }, 'body.auth.jwt_secret'],
      [{ auth: { admin_password: 'a-new-admin-password-42' } }, 'body.auth.admin_password'],
      [{ rate_limit: { requests_per_minute: 0 } }, 'body.rate_limit.requests_per_minute'],
      [{ rate_limit: { requests_per_minute: '9' } }, 'body.rate_limit.requests_per_minute'],
      [{ logging: { level: 'loud' } }, 'body.logging.level'],
      [{ rate_limit: 7 }, 'body.rate_limit'],
    ])('PATCH %j is 400 naming %s, and changes nothing', async (body, field) => {
      const before = (await getConfig()).body;
      const updates = (await configUpdates()).length;
      const res = await patch(body);
      expectValidationError(res, field);
      // A refused secret is not echoed back.
      expect(JSON.stringify(res.body)).not.toContain('a-new-');
      expect((await getConfig()).body).toEqual(before);
      expect((await configUpdates()).length).toBe(updates);
      expect(await server.store.getSettings()).toEqual({});
    });

    it('PATCH {} and PATCH with an empty section are 400', async () => {
      const before = (await getConfig(configKeys[1])).body;
      expectValidationError(await patch({}, configKeys[1]), 'body');
      expectValidationError(await patch({ rate_limit: {} }, configKeys[1]), 'body');
      expectApiError(await patch([], configKeys[1]), 400, 'VALIDATION_ERROR');
      expectApiError(await call(server.url, 'PATCH', '/api/v1/config', { apiKey: configKeys[1], body: 'level=debug', headers: { 'Content-Type': 'text/plain' } }), 415, 'UNSUPPORTED_MEDIA_TYPE');
      expect((await getConfig(configKeys[1])).body).toEqual(before);
      expect(await configUpdates()).toHaveLength(0);
    });

    it('PATCH logging.level takes effect: warn silences request lines, debug brings them back', async () => {
      const quiet = await patch({ logging: { level: 'warn' } }, configKeys[1]);
      expect(quiet.status, JSON.stringify(quiet.body)).toBe(200);
      expect(quiet.body.logging.level).toBe('warn');
      expect(server.logger.level).toBe('warn');
      await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: configKeys[1], headers: { 'X-Request-Id': 'obs-quiet-request' } });

      const loud = await patch({ logging: { level: 'debug' } }, configKeys[1]);
      expect(loud.status, JSON.stringify(loud.body)).toBe(200);
      expect(loud.body.logging.level).toBe('debug');
      expect(server.logger.level).toBe('debug');
      expect(server.logger.isLevelEnabled('debug')).toBe(true);
      await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: configKeys[1], headers: { 'X-Request-Id': 'obs-loud-request' } });
      await eventually(() => expect(server.logs.some((l) => l.includes('obs-loud-request'))).toBe(true));
      expect(server.logs.some((l) => l.includes('obs-quiet-request'))).toBe(false);
      expect((await getConfig(configKeys[1])).body.logging.level).toBe('debug');
    });

    it('PATCH rate_limit.requests_per_minute = 7: the next response says 7, it is enforced and audited', async () => {
      const updates = (await configUpdates()).length;
      const res = await patch({ rate_limit: { requests_per_minute: 7 } }, configKeys[2]);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.rate_limit.requests_per_minute).toBe(7);
      expect(res.body.auth.jwt_secret).toBe('(set)');
      expect(JSON.stringify(res.body)).not.toContain(JWT_SECRET);

      // The next response, from another user (whose session spent 1 creating the key).
      const next = await call(server.url, 'GET', '/api/v1/audit-logs?action=config.update&limit=1', { apiKey: afterPatchAuditKey });
      expect(next.status, JSON.stringify(next.body)).toBe(200);
      expect(next.headers.get('x-ratelimit-limit')).toBe('7');
      expect(next.headers.get('x-ratelimit-remaining')).toBe('5');
      // The change is in the audit log, with who made it, before and after.
      expect(next.body.data[0]).toMatchObject({
        action: 'config.update',
        outcome: 'success',
        actor_user_id: adminId,
        target: 'rate_limit.requests_per_minute',
        details: { before: { 'rate_limit.requests_per_minute': START_RPM }, after: { 'rate_limit.requests_per_minute': 7 } },
      });
      expect(await configUpdates()).toHaveLength(updates + 1);

      // Enforced: a key of a third user, whose session spent 1 creating it, gets 6 more; the 7th is refused.
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) {
        const r = await call(server.url, 'GET', '/api/v1/models', { apiKey: afterPatchKey });
        expect(r.headers.get('x-ratelimit-limit')).toBe('7');
        statuses.push(r.status);
      }
      expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429, 429]);
    });

    it('the changes survive a restart (persisted, and they win over the environment)', async () => {
      server = await server.restart();
      const token = await login(server.url);
      const res = await call(server.url, 'GET', '/api/v1/config', { token });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-ratelimit-limit')).toBe('7');
      expect(res.body.rate_limit.requests_per_minute).toBe(7);
      expect(res.body.logging.level).toBe('debug');
      expect(server.logger.level).toBe('debug');
      expect(server.config.rate_limit.requests_per_minute).toBe(7);
      const text = JSON.stringify(res.body);
      expect(text).not.toContain(ADMIN_PASSWORD);
      expect(text).not.toContain(JWT_SECRET);
      // The audit trail survived too, and still holds no secret.
      const updates = (await server.store.listAudit({ action: 'config.update', limit: 100 }));
      expect(updates.map((e) => e.target)).toEqual(['rate_limit.requests_per_minute', 'logging.level', 'logging.level']);
      const dump = JSON.stringify(await server.store.listAudit({ limit: 10_000 }));
      for (const secret of secrets) expect(dump.includes(secret)).toBe(false);
    });
  });
});
