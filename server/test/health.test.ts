import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type TestServer } from '../../test/helpers/server.js';

describe('health probes', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('answers liveness without credentials or rate-limit headers', async () => {
    const res = await call(server.url, 'GET', '/health');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'ok', version: expect.any(String) });
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers.get('x-ratelimit-limit')).toBeNull();
  });

  it('answers readiness with its checks, and turns ready once the engine has started', async () => {
    const first = await call(server.url, 'GET', '/health/ready');
    expect(first.body.checks.store).toBe(true);
    // The engine loads in the background: 503 with Retry-After until then, never anything else.
    if (first.status !== 200) {
      expect(first.status).toBe(503);
      expect(first.body).toMatchObject({ ready: false, checks: { store: true, engine: false }, backends: { store: 'sqlite', limits: 'memory' } });
      expect(first.headers.get('retry-after')).toBe('1');
    }
    let res = first;
    for (let i = 0; i < 100 && res.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      res = await call(server.url, 'GET', '/health/ready');
    }
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ ready: true, checks: { store: true, engine: true }, replica_id: expect.any(String), backends: { store: 'sqlite', limits: 'memory' } });
  });

  it('echoes a sane client request id and replaces an unsafe one', async () => {
    const echoed = await call(server.url, 'GET', '/health', { headers: { 'X-Request-Id': 'trace-abc.123' } });
    expect(echoed.headers.get('x-request-id')).toBe('trace-abc.123');
    const replaced = await call(server.url, 'GET', '/health', { headers: { 'X-Request-Id': 'bad id with spaces' } });
    expect(replaced.headers.get('x-request-id')).not.toBe('bad id with spaces');
  });
});
