import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

const APP = 'https://app.example';
const ADMIN_UI = 'https://admin.example';
const EVIL = 'https://evil.example';

const list = (value: string | null) => (value ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);

function preflight(server: TestServer, origin: string, route = '/api/v1/models', method = 'GET', headers = 'authorization, x-api-key') {
  return call(server.url, 'OPTIONS', route, {
    headers: { Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': headers },
  });
}

describe('CORS with [server] cors_origins set', () => {
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'server.cors_origins': `${APP},${ADMIN_UI}`, 'rate_limit.requests_per_minute': 10_000 } });
    token = await login(server.url);
  });
  afterAll(() => server.close());

  it('answers a preflight from an allowed origin with 204 and the allow headers', async () => {
    for (const origin of [APP, ADMIN_UI]) {
      const res = await preflight(server, origin);
      expect(res.status).toBe(204);
      expect(res.headers.get('access-control-allow-origin')).toBe(origin);
      expect(list(res.headers.get('access-control-allow-methods'))).toEqual(expect.arrayContaining(['get', 'post', 'patch', 'delete']));
      expect(list(res.headers.get('access-control-allow-headers'))).toEqual(expect.arrayContaining(['authorization', 'x-api-key', 'content-type']));
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
      expect(list(res.headers.get('vary'))).toContain('origin');
    }
  });

  it('a preflight for a POST with a JSON body is allowed too', async () => {
    const res = await preflight(server, APP, '/api/v1/auth/login', 'POST', 'content-type');
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(APP);
  });

  it('a simple GET from an allowed origin has ACAO and exposes the rate-limit and request-id headers', async () => {
    const res = await call(server.url, 'GET', '/api/v1/auth/me', { token, headers: { Origin: APP } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(APP);
    const exposed = list(res.headers.get('access-control-expose-headers'));
    expect(exposed).toEqual(
      expect.arrayContaining(['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'retry-after', 'x-request-id']),
    );
    expect(list(res.headers.get('vary'))).toContain('origin');
  });

  it('error answers to an allowed origin keep ACAO and the exposed headers (the SDK must read them)', async () => {
    const unauthorized = await call(server.url, 'GET', '/api/v1/auth/me', { headers: { Origin: APP } });
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers.get('access-control-allow-origin')).toBe(APP);
    expect(list(unauthorized.headers.get('access-control-expose-headers'))).toEqual(expect.arrayContaining(['x-ratelimit-remaining', 'retry-after']));
    expect(unauthorized.headers.get('x-ratelimit-limit')).toBe('10000');

    const notFound = await call(server.url, 'GET', '/api/v1/nothing-here', { token, headers: { Origin: APP } });
    expect(notFound.status).toBe(404);
    expect(notFound.headers.get('access-control-allow-origin')).toBe(APP);
  });

  it('refuses a preflight from another origin: 403 PERMISSION_DENIED without ACAO', async () => {
    for (const origin of [EVIL, 'https://app.example.evil.example', 'http://app.example', 'https://app.example:8443', 'null']) {
      const res = await preflight(server, origin);
      expect(res.status, origin).toBe(403);
      expect(res.body.error.code).toBe('PERMISSION_DENIED');
      expect(res.headers.get('access-control-allow-origin'), origin).toBeNull();
      expect(res.headers.get('access-control-allow-methods')).toBeNull();
      expect(res.headers.get('x-request-id')).toBeTruthy();
    }
  });

  it('gives no ACAO to a simple request from another origin', async () => {
    const res = await call(server.url, 'GET', '/api/v1/auth/me', { token, headers: { Origin: EVIL } });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('access-control-expose-headers')).toBeNull();
  });

  it('requests without Origin (not cross-origin) are unaffected', async () => {
    const res = await call(server.url, 'GET', '/api/v1/auth/me', { token });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('CORS by default (no origins configured)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('refuses every cross-origin preflight', async () => {
    for (const origin of [APP, EVIL, 'http://localhost:3000', `http://127.0.0.1:${server.port}`]) {
      const res = await preflight(server, origin);
      expect(res.status, origin).toBe(403);
      expect(res.body.error.code).toBe('PERMISSION_DENIED');
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
    }
  });

  it('gives no ACAO to simple cross-origin requests', async () => {
    const res = await call(server.url, 'GET', '/api/v1/models', { headers: { Origin: APP } });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });
});
