import { randomUUID } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, createUser, streamRequest, waitFor } from '../../test/helpers/security.js';
import { ADMIN_PASSWORD, call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

const PASSWORD = 'a-long-user-password-1';
const MAX_BODY = 1024;

/** The documented error shape, exactly: `{error: {code, message, details}}`, JSON, with a request id. */
function expectErrorShape(
  res: { status: number; body: any; headers: Headers | Record<string, string | string[] | undefined> },
  status: number,
  code: string,
) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  const header = (name: string) => (res.headers instanceof Headers ? res.headers.get(name) : (res.headers[name] as string | undefined));
  expect(header('content-type') ?? '').toMatch(/^application\/json/);
  expect(header('x-request-id')).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
  expect(res.body).toBeTypeOf('object');
  expect(Object.keys(res.body)).toEqual(['error']);
  expect(Object.keys(res.body.error).sort()).toEqual(['code', 'details', 'message']);
  expect(res.body.error.code).toBe(code);
  expect(typeof res.body.error.message).toBe('string');
  expect(res.body.error.message.length).toBeGreaterThan(0);
  const { details } = res.body.error;
  expect(details === null || typeof details === 'object').toBe(true);
  if (Array.isArray(details)) {
    for (const issue of details) expect(Object.keys(issue).sort()).toEqual(['message', 'path']);
  }
  // Never internals: no stack frames or source paths anywhere in the body.
  const text = JSON.stringify(res.body);
  expect(text).not.toMatch(/\n\s+at\s|\bat .+\(.+:\d+:\d+\)|\.ts:\d+|node_modules|\/work\//);
}

describe('error responses', () => {
  let server: TestServer;
  let adminToken: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000, 'limits.max_body_bytes': MAX_BODY } });
    adminToken = await login(server.url);
  });
  afterAll(() => server.close());

  it('400 VALIDATION_ERROR with a list of {path, message}', async () => {
    const res = await call(server.url, 'POST', '/api/v1/users', { token: adminToken, body: { username: 'no spaces allowed', password: 'short' } });
    expectErrorShape(res, 400, 'VALIDATION_ERROR');
    expect(Array.isArray(res.body.error.details)).toBe(true);
    const paths = res.body.error.details.map((d: { path: string }) => d.path);
    expect(paths).toEqual(expect.arrayContaining(['body.username', 'body.password']));

    const malformed = await call(server.url, 'POST', '/api/v1/auth/login', { body: '{not json', headers: { 'Content-Type': 'application/json' } });
    expectErrorShape(malformed, 400, 'VALIDATION_ERROR');
    expect(malformed.body.error.details.length).toBeGreaterThan(0);
  });

  it('401 AUTHENTICATION_FAILED, without and with bad credentials', async () => {
    expectErrorShape(await call(server.url, 'GET', '/api/v1/auth/me'), 401, 'AUTHENTICATION_FAILED');
    expectErrorShape(await call(server.url, 'GET', '/api/v1/auth/me', { token: 'nope' }), 401, 'AUTHENTICATION_FAILED');
    expectErrorShape(await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: 'inf_nope' }), 401, 'AUTHENTICATION_FAILED');
  });

  it('403 PERMISSION_DENIED', async () => {
    const key = await createApiKey(server.url, { token: adminToken }, { name: 'ro', permissions: ['read_models'] });
    expectErrorShape(await call(server.url, 'GET', '/api/v1/users', { apiKey: key.key }), 403, 'PERMISSION_DENIED');
  });

  it('404 NOT_FOUND for an unknown route under /api/v1 and for an unknown id', async () => {
    expectErrorShape(await call(server.url, 'GET', '/api/v1/no-such-route', { token: adminToken }), 404, 'NOT_FOUND');
    expectErrorShape(await call(server.url, 'GET', '/api/v1/no-such-route'), 404, 'NOT_FOUND');
    expectErrorShape(await call(server.url, 'POST', '/api/v1/users/and/more', { token: adminToken, body: {} }), 404, 'NOT_FOUND');
    expectErrorShape(await call(server.url, 'GET', `/api/v1/users/${randomUUID()}`, { token: adminToken }), 404, 'NOT_FOUND');
    expectErrorShape(await call(server.url, 'GET', '/api/v1/models/no-such-model', { token: adminToken }), 404, 'NOT_FOUND');
  });

  it('405 METHOD_NOT_ALLOWED for a known route with another method', async () => {
    expectErrorShape(await call(server.url, 'PUT', '/api/v1/users', { token: adminToken, body: {} }), 405, 'METHOD_NOT_ALLOWED');
    expectErrorShape(await call(server.url, 'DELETE', '/api/v1/auth/login', { token: adminToken }), 405, 'METHOD_NOT_ALLOWED');
  });

  it('a 405 carries an Allow header with the route\'s methods (RFC 9110 §15.5.6: MUST)', async () => {
    const res = await call(server.url, 'PUT', '/api/v1/users', { token: adminToken, body: {} });
    expect(res.status).toBe(405);
    const allow = (res.headers.get('allow') ?? '').split(',').map((m) => m.trim());
    expect(allow).toEqual(expect.arrayContaining(['GET', 'POST']));
    expect(allow).not.toContain('PUT');
    const del = await call(server.url, 'DELETE', '/api/v1/auth/login', { token: adminToken });
    expect((del.headers.get('allow') ?? '').split(',').map((m) => m.trim())).toContain('POST');
  });

  it('409 CONFLICT', async () => {
    await createUser(server.url, { token: adminToken }, { username: 'twin', password: PASSWORD });
    expectErrorShape(await call(server.url, 'POST', '/api/v1/users', { token: adminToken, body: { username: 'twin', password: PASSWORD } }), 409, 'CONFLICT');
  });

  it('415 UNSUPPORTED_MEDIA_TYPE', async () => {
    const res = await call(server.url, 'POST', '/api/v1/users', {
      token: adminToken,
      body: 'username=x&password=y',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    expectErrorShape(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  describe('413 PAYLOAD_TOO_LARGE', () => {
    /** A login body of exactly `size` bytes (the password pads it). */
    const loginBodyOf = (size: number) => {
      const empty = JSON.stringify({ username: 'admin', password: '' });
      return JSON.stringify({ username: 'admin', password: 'p'.repeat(size - empty.length) });
    };

    const expectHealthy = async () => {
      expect((await call(server.url, 'GET', '/health')).status).toBe(200);
      const ok = await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD } });
      expect(ok.status).toBe(200);
    };

    it('accepts a body of exactly the limit and refuses one byte more (Content-Length)', async () => {
      const exact = loginBodyOf(MAX_BODY);
      expect(Buffer.byteLength(exact)).toBe(MAX_BODY);
      const atLimit = await call(server.url, 'POST', '/api/v1/auth/login', { body: exact });
      expect(atLimit.status).toBe(401); // read and judged: a wrong password

      const over = await call(server.url, 'POST', '/api/v1/auth/login', { body: loginBodyOf(MAX_BODY + 1) });
      expectErrorShape(over, 413, 'PAYLOAD_TOO_LARGE');
      await expectHealthy();
    });

    it('refuses a large body announced by Content-Length on an authenticated route', async () => {
      const big = JSON.stringify({ username: 'big', password: 'x'.repeat(50_000) });
      const res = await call(server.url, 'POST', '/api/v1/users', { token: adminToken, body: big });
      expectErrorShape(res, 413, 'PAYLOAD_TOO_LARGE');
      await expectHealthy();
    });

    it('refuses a chunked body without Content-Length as soon as it passes the limit', async () => {
      const res = await streamRequest(`${server.url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        chunk: Buffer.alloc(512, 'a'),
        chunks: 400, // 200 KiB offered, 2 ms apart
      });
      expectErrorShape(res, 413, 'PAYLOAD_TOO_LARGE');
      // The server answered long before the client would have finished sending.
      expect(res.bytesSentBeforeResponse).toBeLessThan(res.bytesOffered / 2);
      await expectHealthy();
    });

    it('refuses a chunked body sent with fetch (ReadableStream, duplex half), and stays healthy', async () => {
      let pulled = 0;
      const chunk = new TextEncoder().encode('x'.repeat(700));
      const stream = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (pulled++ >= 50) {
            controller.close();
            return;
          }
          await new Promise((r) => setTimeout(r, 2));
          controller.enqueue(chunk);
        },
      });
      const response = await fetch(`${server.url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: stream,
        duplex: 'half',
      } as RequestInit & { duplex: 'half' });
      const body = (await response.json()) as any;
      expectErrorShape({ status: response.status, headers: response.headers, body }, 413, 'PAYLOAD_TOO_LARGE');
      expect(body.error.details).toEqual({ limit_bytes: MAX_BODY });
      // The answer came once the limit was passed, not after the whole stream (51 chunks).
      expect(pulled).toBeLessThan(20);
      await expectHealthy();
    });

    it('refuses a chunked body on an authenticated route, logs the request, and stays up', async () => {
      // Regression: the request log used to read the client IP after the socket was gone (a
      // TypeError in a 'finish' listener), which lost the line and crashed the process.
      const res = await streamRequest(`${server.url}/api/v1/users`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${adminToken}`, 'X-Request-Id': 'req-413-authed' },
        chunk: Buffer.alloc(400, 'b'),
        chunks: 200,
      });
      expectErrorShape(res, 413, 'PAYLOAD_TOO_LARGE');
      const line = await waitFor(() => server.logs.find((l) => l.includes('"request_id":"req-413-authed"')), 1_000, 'the 413 request log line');
      expect(JSON.parse(line)).toMatchObject({ status: 413, method: 'POST', endpoint: '/api/v1/users', ip: '127.0.0.1' });
      await expectHealthy();
    });
  });

  it('every error answer under /api/v1 carries the rate-limit headers', async () => {
    for (const res of [
      await call(server.url, 'GET', '/api/v1/auth/me'),
      await call(server.url, 'GET', '/api/v1/no-such-route', { token: adminToken }),
      await call(server.url, 'PUT', '/api/v1/users', { token: adminToken, body: {} }),
    ]) {
      expect(res.headers.get('x-ratelimit-limit')).toBe('10000');
      expect(res.headers.get('x-ratelimit-remaining')).toMatch(/^\d+$/);
      expect(res.headers.get('x-ratelimit-reset')).toMatch(/^\d+$/);
    }
  });
});

describe('429 RATE_LIMITED', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 2 } });
  });
  afterAll(() => server.close());

  it('has the error shape and a Retry-After', async () => {
    await call(server.url, 'GET', '/api/v1/models');
    await call(server.url, 'GET', '/api/v1/models');
    const res = await call(server.url, 'GET', '/api/v1/models');
    expectErrorShape(res, 429, 'RATE_LIMITED');
    expect(res.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
  });
});

describe('500 INTERNAL_ERROR', () => {
  // The models directory is replaced by a file while the server runs: listing it then fails inside
  // the server (ENOTDIR), an unexpected error like any other.
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000 } });
    rmSync(server.modelsDir, { recursive: true, force: true });
    writeFileSync(server.modelsDir, 'this is a file, not a directory');
  });
  afterAll(() => server.close());

  it('answers an unexpected failure in the documented shape, without a stack or internals, and logs it', async () => {
    const token = await login(server.url);
    const res = await call(server.url, 'GET', '/api/v1/models', { token, headers: { 'X-Request-Id': 'req-500-check' } });
    expectErrorShape(res, 500, 'INTERNAL_ERROR');
    expect(res.headers.get('x-request-id')).toBe('req-500-check');
    expect(res.body.error.details).toBeNull();
    const text = JSON.stringify(res.body);
    expect(text).not.toMatch(/ENOTDIR|readdir|scandir|Error:/);
    expect(text).not.toContain(server.modelsDir);
    const logged = await waitFor(
      () => server.logs.find((l) => l.includes('req-500-check') && l.includes('"level":"error"')),
      2_000,
      'an error log line for the request',
    );
    expect(logged).toContain('ENOTDIR');
    // And the server keeps serving.
    expect((await call(server.url, 'GET', '/api/v1/auth/me', { token })).status).toBe(200);
  });
});
