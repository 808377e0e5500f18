/**
 * Rate limits and login throttling on Redis, and what happens when Redis goes away: rate limits
 * fall back to the replica's own counters (with a warning), logins fail closed (503), readiness
 * says Redis is down; once Redis is back the shared counters apply again. Uses a private
 * redis-server on its own port, so stopping it disturbs nobody.
 *
 * Start-up with a database that cannot be reached fails with one clear line, without the password.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisRateLimiter } from '../src/limits/redis-rate-limiter.js';
import { runCli, tempRoot } from '../../test/helpers/child-server.js';
import { mustRunSharedSuites } from '../../test/helpers/shared-services.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

const redisServer = spawnSync('redis-server', ['--version']).status === 0;
if (!redisServer && !mustRunSharedSuites) console.warn('shared limits: skipped, redis-server is not installed (CI installs it)');

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A throwaway redis-server on `port`, answering once it is up. */
async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (up) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('redis-server did not start');
}

async function stopRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

describe.skipIf(!redisServer && !mustRunSharedSuites)('limits on Redis, and Redis going away', () => {
  let port: number;
  let redis: ChildProcess;
  let server: TestServer;
  let admin: string;

  beforeAll(async () => {
    port = await freePort();
    redis = await startRedis(port);
    server = await startTestServer({ env: { INFERNO_REDIS_URL: `redis://127.0.0.1:${port}` }, settings: { 'rate_limit.requests_per_minute': 5 } });
    admin = await login(server.url);
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    if (redis) await stopRedis(redis);
  });

  it('counts the budget in Redis and says so in readiness', async () => {
    const ready = await call(server.url, 'GET', '/health/ready');
    expect(ready.body.checks.redis).toBe(true);
    expect(ready.body.backends).toEqual({ store: 'sqlite', limits: 'redis' });
    const first = await call(server.url, 'GET', '/api/v1/auth/me', { token: admin });
    expect(first.headers.get('x-ratelimit-limit')).toBe('5');
    const remaining = Number(first.headers.get('x-ratelimit-remaining'));
    const second = await call(server.url, 'GET', '/api/v1/auth/me', { token: admin });
    expect(Number(second.headers.get('x-ratelimit-remaining'))).toBe(remaining - 1);
  });

  it('gives a unit back on refund, so a request a later budget refused costs the earlier one nothing', async () => {
    const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
    try {
      const limiter = new RedisRateLimiter(client, server.logger, `refund-test-${process.pid}`);
      expect((await limiter.hit('key', 3, 60_000)).remaining).toBe(2);
      expect((await limiter.hit('key', 3, 60_000)).remaining).toBe(1);
      await limiter.refund('key', 60_000);
      // Without the refund this one would leave 0.
      expect((await limiter.hit('key', 3, 60_000)).remaining).toBe(1);
      expect((await limiter.hit('key', 3, 60_000)).allowed).toBe(true);
      expect((await limiter.hit('key', 3, 60_000)).allowed).toBe(false);
    } finally {
      client.disconnect();
    }
  });

  it('without Redis: rate limits go on locally with a warning, logins answer 503, readiness is 503', async () => {
    await stopRedis(redis);
    const limited = [];
    for (let i = 0; i < 6; i++) limited.push(await call(server.url, 'GET', '/api/v1/auth/me', { token: admin }));
    // Still answered and still limited: the local counters start a fresh window of 5.
    expect(limited.slice(0, 5).map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(limited[5]!.status).toBe(429);
    expect(server.logs.some((line) => line.includes('"level":"warn"') && line.includes('rate limits fall back'))).toBe(true);

    const started = Date.now();
    const loginAttempt = await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: server.adminPassword } });
    expect(loginAttempt.status).toBe(503);
    expect(loginAttempt.body.error.code).toBe('SERVICE_UNAVAILABLE');
    expect(Number(loginAttempt.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(10_000); // refused, not stalled

    const ready = await call(server.url, 'GET', '/health/ready');
    expect(ready.status).toBe(503);
    expect(ready.body.checks).toMatchObject({ store: true, redis: false });
  }, 30_000);

  it('once Redis is back, logins and shared counting resume', async () => {
    redis = await startRedis(port);
    let ok = false;
    for (let i = 0; i < 100 && !ok; i++) {
      ok = (await call(server.url, 'GET', '/health/ready')).status === 200;
      if (!ok) await new Promise((r) => setTimeout(r, 100));
    }
    expect(ok).toBe(true);
    // A fresh Redis: the admin's budget starts again at 5.
    const me = await call(server.url, 'GET', '/api/v1/auth/me', { token: admin });
    expect(me.status).toBe(200);
    expect(me.headers.get('x-ratelimit-remaining')).toBe('4');
    const loginAttempt = await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: server.adminPassword } });
    expect(loginAttempt.status).toBe(200);
  }, 30_000);
});

describe('start-up with shared backends that cannot be reached', () => {
  it('fails with one clear line naming the database, its password masked, and no stack', async () => {
    const dir = tempRoot();
    const result = await runCli(dir, ['serve'], { INFERNO_DATABASE_URL: 'postgres://inferno:s3cret-pw-123@127.0.0.1:1/inferno' });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('inferno: Cannot use the database at postgres://inferno:***@127.0.0.1:1/inferno');
    expect(result.stderr + result.stdout).not.toContain('s3cret-pw-123');
    expect(result.stderr).not.toMatch(/^\s+at /m);
  }, 60_000);

  it('fails the same way for Redis', async () => {
    const dir = tempRoot();
    const result = await runCli(dir, ['serve'], { INFERNO_REDIS_URL: `redis://:r3dis-pw-456@127.0.0.1:${await freePort()}` });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/inferno: Cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+/);
    expect(result.stderr + result.stdout).not.toContain('r3dis-pw-456');
    expect(result.stderr).not.toMatch(/^\s+at /m);
  }, 60_000);
});
