import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Drain } from '../src/http/drain.js';
import { liveness } from '../src/http/liveness.js';
import { createLogger } from '../src/logging/logger.js';
import { ServerMetrics } from '../src/observability/metrics.js';
import { Telemetry } from '../src/observability/telemetry.js';
import { scrape } from '../../test/helpers/prometheus.js';
import { createApiKey, ALL_PERMISSIONS } from '../../test/helpers/security.js';
import { login, startTestServer, type TestServer } from '../../test/helpers/server.js';

interface Raw {
  status: number;
  /** Header names and values in the order sent. */
  headers: [string, string][];
  body: string;
}

function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        const pairs: [string, string][] = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) pairs.push([res.rawHeaders[i]!, res.rawHeaders[i + 1]!]);
        resolve({ status: res.statusCode!, headers: pairs, body });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** What must be equal between two answers: everything but the date, the request id's value and the uptime. */
const comparable = (raw: Raw) => ({
  status: raw.status,
  headers: raw.headers.map(([name, value]) => [name, name === 'Date' || name === 'X-Request-Id' ? '' : name === 'Content-Length' ? 'n' : value]),
  body: { ...JSON.parse(raw.body), uptime_seconds: 0 },
});

describe('GET /health answered before Koa', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  // `/health?` has the same path, so Koa's route answers it: the reference for the short way.
  it('sends the status, headers (in order) and body that the Koa route sends', async () => {
    const fast = await get(`${server.url}/health`);
    const koa = await get(`${server.url}/health?`);
    expect(fast.status).toBe(200);
    expect(comparable(fast)).toEqual(comparable(koa));
    expect(fast.headers.map(([name]) => name)).toEqual(['X-Request-Id', 'X-Content-Type-Options', 'Cache-Control', 'Referrer-Policy', 'Vary', 'Content-Type', 'Content-Length', 'Date', 'Connection']);
    expect(JSON.parse(fast.body)).toEqual({ status: 'ok', version: JSON.parse(koa.body).version, uptime_seconds: expect.any(Number) });
    expect(Number(fast.headers.find(([n]) => n === 'Content-Length')![1])).toBe(Buffer.byteLength(fast.body));
    // A client's sane request id is echoed by both; a fresh one is a UUID.
    for (const path of ['/health', '/health?']) {
      const echoed = await get(`${server.url}${path}`, { 'X-Request-Id': 'probe-1.a' });
      expect(echoed.headers.find(([n]) => n === 'X-Request-Id')![1]).toBe('probe-1.a');
    }
    expect(fast.headers.find(([n]) => n === 'X-Request-Id')![1]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('writes the same access log line and counts in the same metric series', async () => {
    const { key } = await createApiKey(server.url, { token: await login(server.url) }, { name: 'scraper', permissions: [...ALL_PERMISSIONS] });
    const series = { route: '/health', method: 'GET', status: '200' };
    const before = (await scrape(server.url, key)).value('inferno_http_requests_total', series);
    await get(`${server.url}/health`, { 'X-Request-Id': 'fast-line' });
    await get(`${server.url}/health?`, { 'X-Request-Id': 'koa-line' });
    const after = (await scrape(server.url, key)).value('inferno_http_requests_total', series);
    expect(after - before).toBe(2);
    const lineOf = (id: string) => {
      const line = server.logs.map((l) => JSON.parse(l)).find((l) => l.msg === 'request' && l.request_id === id);
      expect(line, id).toBeDefined();
      return { ...line, time: undefined, request_id: undefined, response_time_ms: typeof line.response_time_ms };
    };
    expect(lineOf('fast-line')).toEqual(lineOf('koa-line'));
    expect(lineOf('fast-line')).toMatchObject({ method: 'GET', endpoint: '/health', status: 200, user_id: null, key_id: null, ip: expect.any(String) });
  });
});

describe('liveness(): what it leaves to Koa', () => {
  const drain = new Drain();
  let url: string;
  let listener: http.Server;
  const lines: string[] = [];
  beforeAll(async () => {
    const logger = createLogger('info', new Writable({ write: (chunk, _e, done) => (lines.push(String(chunk)), done()) }));
    const answer = liveness({ deps: { version: 'x', startedAt: Date.now() }, logger, telemetry: new Telemetry(new ServerMetrics({ defaultMetrics: false }), undefined), hsts: true, proxy: true, drain });
    listener = http.createServer((req, res) => {
      if (answer(req, res)) return;
      res.writeHead(299).end('koa');
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(listener.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((r) => listener.close(r)));

  it('answers a plain GET /health, with Strict-Transport-Security over HTTPS', async () => {
    const res = await get(`${url}/health`);
    expect(res.status).toBe(200);
    expect(res.headers.slice(0, 6).map(([n]) => n)).toEqual(['X-Request-Id', 'Strict-Transport-Security', 'X-Content-Type-Options', 'Cache-Control', 'Referrer-Policy', 'Vary']);
    expect(JSON.parse(res.body)).toMatchObject({ status: 'ok', version: 'x' });
  });

  it('hands on other methods and paths, an Origin, a proxied address and the drain', async () => {
    expect((await get(`${url}/health`, {}, 'HEAD')).status).toBe(299);
    expect((await get(`${url}/health`, {}, 'POST')).status).toBe(299);
    expect((await get(`${url}/health/ready`)).status).toBe(299);
    expect((await get(`${url}/health?x=1`)).status).toBe(299);
    expect((await get(`${url}/health`, { Origin: 'https://app.example' })).status).toBe(299);
    expect((await get(`${url}/health`, { 'X-Forwarded-For': '203.0.113.9' })).status).toBe(299);
    drain.begin(10_000);
    expect((await get(`${url}/health`)).status).toBe(299);
  });
});
