// Slow and numerous connections: caps in all and per client address, header and body idle timeouts.
// The attacking sockets come from other loopback addresses (127.0.0.0/8 all reach the server).
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type TestServer } from '../../test/helpers/server.js';

interface Probe {
  socket: net.Socket;
  /** ms from connect until the server closed it; undefined while open. */
  closedAfter?: number;
  /** What the server answered, if anything. */
  received: string;
  closed: Promise<void>;
}

/** A raw TCP connection to the server from `localAddress`, sending `first` once connected. */
function open(server: TestServer, localAddress: string, first: string): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: server.port, localAddress });
    let started = 0;
    let markClosed: () => void;
    const probe: Probe = { socket, received: '', closed: new Promise((r) => (markClosed = r)) };
    socket.on('data', (chunk) => (probe.received += chunk.toString()));
    socket.on('error', () => undefined); // a reset is one way of being closed
    socket.on('close', () => {
      probe.closedAfter = performance.now() - started;
      markClosed();
    });
    socket.once('connect', () => {
      started = performance.now();
      socket.write(first);
      resolve(probe);
    });
    socket.once('error', (error) => (started === 0 ? reject(error) : undefined));
  });
}

const within = <T>(promise: Promise<T>, ms: number) =>
  Promise.race([promise.then(() => true), new Promise<boolean>((r) => setTimeout(r, ms, false))]);

describe('connections: per-address cap and idle timeouts', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({
      settings: {
        'server.max_connections_per_address': 20,
        'server.headers_timeout_seconds': 2,
        'server.body_idle_timeout_seconds': 2,
        'server.request_timeout_seconds': 60,
        'rate_limit.requests_per_minute': 100_000,
      },
    });
  });
  afterAll(() => server.close());

  it('a slow-connection flood from one address is capped there, while another address is served', async () => {
    const flood: Probe[] = [];
    for (let i = 0; i < 200; i++) {
      // Each sends a body one byte at a time, fast enough never to be idle.
      flood.push(await open(server, '127.0.0.2', 'POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{'));
    }
    const trickle = setInterval(() => {
      for (const probe of flood) if (probe.closedAfter === undefined) probe.socket.write(' ');
    }, 500);
    try {
      await new Promise((r) => setTimeout(r, 1000));
      const held = flood.filter((p) => p.closedAfter === undefined);
      expect(held.length).toBe(20);
      // The others were closed at once, before the server read a byte of them.
      expect(flood.filter((p) => p.closedAfter !== undefined).every((p) => p.received === '')).toBe(true);

      // Meanwhile requests from 127.0.0.1 keep being answered.
      let worstMs = 0;
      for (let i = 0; i < 20; i++) {
        const started = performance.now();
        expect((await call(server.url, 'GET', '/health')).status).toBe(200);
        expect((await call(server.url, 'GET', '/api/v1/models')).status).toBe(401);
        worstMs = Math.max(worstMs, performance.now() - started);
      }
      expect(worstMs).toBeLessThan(5000); // generous: the point is that they are answered at all
    } finally {
      clearInterval(trickle);
      for (const probe of flood) probe.socket.destroy();
    }
  });

  it('a body that stops arriving is dropped within the body idle timeout (2 s here)', async () => {
    const probe = await open(server, '127.0.0.3', 'POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"user');
    // Checked once a second: dropped after 2 to 3 s, well before the 60 s request timeout.
    expect(await within(probe.closed, 10_000)).toBe(true);
    expect(probe.closedAfter!).toBeGreaterThan(1500);
  });

  it('a body refused early (413) that then stalls is dropped too', async () => {
    const probe = await open(server, '127.0.0.7', 'POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{');
    expect(await within(probe.closed, 10_000)).toBe(true);
    expect(probe.received).toMatch(/^HTTP\/1\.1 413/);
  });

  it('headers that trickle in are cut at the headers timeout (2 s here)', async () => {
    const probe = await open(server, '127.0.0.4', 'GET /health HTTP/1.1\r\nHost: x\r\n');
    const trickle = setInterval(() => probe.socket.writable && probe.socket.write('X-A: b\r\n'), 300);
    try {
      expect(await within(probe.closed, 10_000)).toBe(true);
      expect(probe.received).not.toContain('200 OK');
    } finally {
      clearInterval(trickle);
    }
  });

  it('a body that keeps arriving is not dropped', async () => {
    const probe = await open(server, '127.0.0.5', 'POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n');
    const body = '{"username":"a","pass":x';
    for (let i = 0; i < body.length; i += 2) {
      await new Promise((r) => setTimeout(r, 400));
      probe.socket.write(body.slice(i, i + 2));
    }
    await new Promise((r) => setTimeout(r, 500));
    // About 5 s in all, past the idle timeout, and answered (the body is invalid JSON: 400).
    expect(probe.received).toMatch(/^HTTP\/1\.1 400/);
    probe.socket.destroy();
  });
});

describe('connections: the total cap', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'server.max_connections': 10, 'server.max_connections_per_address': 0 } });
  });
  afterAll(() => server.close());

  it('closes connections beyond [server] max_connections at once, and admits new ones when others close', async () => {
    const probes: Probe[] = [];
    for (let i = 0; i < 15; i++) probes.push(await open(server, '127.0.0.6', 'GET /health HTTP/1.1\r\nHost: x\r\n'));
    await new Promise((r) => setTimeout(r, 500));
    expect(probes.filter((p) => p.closedAfter === undefined)).toHaveLength(10);
    for (const probe of probes) probe.socket.destroy();
    await Promise.all(probes.map((p) => p.closed));
    await new Promise((r) => setTimeout(r, 100));
    expect((await call(server.url, 'GET', '/health')).status).toBe(200);
  });
});
