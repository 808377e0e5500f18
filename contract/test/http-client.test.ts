import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { excerpt, HttpClient } from '../src/http-client.js';
import { parseSse } from '../src/sse.js';

let server: http.Server | undefined;
afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

/** A server answering from `script` in turn, noting when each request arrived. */
async function scripted(script: ((res: http.ServerResponse) => void)[]) {
  const arrivals: number[] = [];
  server = http.createServer((req, res) => {
    arrivals.push(Date.now());
    req.resume();
    (script[arrivals.length - 1] ?? ((r) => r.writeHead(200).end('{}')))(res);
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, arrivals };
}

describe('the kit pacing itself by the rate-limit headers', () => {
  it('waits Retry-After after a 429 and sends the request again', async () => {
    const { url, arrivals } = await scripted([(r) => r.writeHead(429, { 'Retry-After': '1', 'Content-Type': 'application/json' }).end('{}')]);
    const client = new HttpClient(url);
    const exchange = await client.send({ method: 'GET', path: '/x', auth: 'none' });
    expect(exchange.status).toBe(200);
    expect(arrivals).toHaveLength(2);
    expect(arrivals[1]! - arrivals[0]!).toBeGreaterThanOrEqual(1000);
    expect(client.stats.rateLimitWaits).toBe(1);
  });

  it('waits for the window to reset when no requests are left, before sending the next', async () => {
    const reset = Math.ceil(Date.now() / 1000) + 1;
    const { url, arrivals } = await scripted([(r) => r.writeHead(200, { 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': String(reset) }).end('{}')]);
    const client = new HttpClient(url);
    await client.send({ method: 'GET', path: '/a', auth: 'none' });
    await client.send({ method: 'GET', path: '/b', auth: 'none' });
    expect(arrivals[1]!).toBeGreaterThanOrEqual(reset * 1000);
    expect(client.stats.rateLimitWaits).toBe(1);
  });

  it('gives up on a Retry-After beyond its cap and returns the 429', async () => {
    const { url, arrivals } = await scripted([(r) => r.writeHead(429, { 'Retry-After': '3600' }).end()]);
    const exchange = await new HttpClient(url, { maxWaitMs: 5_000 }).send({ method: 'GET', path: '/x', auth: 'none' });
    expect(exchange.status).toBe(429);
    expect(arrivals).toHaveLength(1);
  });
});

describe('what the report shows of a request', () => {
  it('masks passwords, keys and tokens in body excerpts', () => {
    const key = `inf_${'A1b2C3d4'.repeat(5)}`;
    const shown = excerpt(JSON.stringify({ username: 'u', password: 'hunter2-hunter2', note: `uses ${key}` }));
    expect(shown).toBe('{"username":"u","password":"***","note":"uses inf_***"}');
    expect(excerpt('{"broken": "inf_abcdefghijklmnop')).toBe('{"broken": "inf_***');
  });
});

describe('the event-stream parser', () => {
  it('reads named events, multi-line data and comments, and flags an event cut off', () => {
    const events = parseSse(': keep-alive\n\nevent: token\ndata: {"text":"a"}\n\ndata: line 1\ndata: line 2\n\nevent: done\ndata: {"x"');
    expect(events).toEqual([
      { event: 'token', data: '{"text":"a"}', hasData: true },
      { event: 'message', data: 'line 1\nline 2', hasData: true },
      { event: 'done', data: '{"x"', hasData: true, unterminated: true },
    ]);
  });
});
