import { afterEach, describe, expect, it, vi } from 'vitest';
import { InfernoClient, NotFoundError, RateLimitError, type RateLimitInfo } from '../src/index.js';
import { parseRateLimit, RateLimitTracker } from '../src/core/rate-limit.js';
import { apiError, type LocalServer, MODEL_LIST, rateLimitHeaders, sendJson, startLocalServer } from './helpers/http.js';

let server: LocalServer | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await server?.close();
  server = undefined;
});

describe('rate-limit tracking', () => {
  it('holds the latest headers from success and error responses alike, and tells onRateLimit', async () => {
    const reset = Math.floor(Date.now() / 1000) + 60;
    server = await startLocalServer((req, res, i) => {
      if (req.url === '/api/v1/models') return sendJson(res, 200, MODEL_LIST, rateLimitHeaders(60, 59 - i, reset));
      return sendJson(res, 404, apiError('NOT_FOUND', 'No such model'), rateLimitHeaders(60, 59 - i, reset));
    });
    const updates: RateLimitInfo[] = [];
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k', onRateLimit: (info) => updates.push(info) });
    expect(client.rateLimit).toBeUndefined();
    await client.models.list();
    expect(client.rateLimit).toEqual({ limit: 60, remaining: 59, reset: new Date(reset * 1000) });
    await expect(client.models.get('missing')).rejects.toBeInstanceOf(NotFoundError);
    expect(client.rateLimit).toEqual({ limit: 60, remaining: 58, reset: new Date(reset * 1000) });
    expect(updates.map((u) => u.remaining)).toEqual([59, 58]);
  });

  it('gives a 429 its Retry-After and the rate-limit snapshot', async () => {
    const reset = Math.floor(Date.now() / 1000) + 30;
    server = await startLocalServer((_req, res) =>
      sendJson(res, 429, apiError('RATE_LIMITED', 'Too many requests'), {
        ...rateLimitHeaders(5, 0, reset),
        'retry-after': 30,
      }),
    );
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k', maxRetries: 0 });
    const error = (await client.models.list().catch((e: unknown) => e)) as RateLimitError;
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error.retryAfter).toBe(30);
    expect(error.rateLimit).toEqual({ limit: 5, remaining: 0, reset: new Date(reset * 1000) });
    expect(error.requestId).toMatch(/^req-/);
    expect(client.rateLimit?.remaining).toBe(0);
  });

  it('keeps the last state when a response has no rate-limit headers', async () => {
    server = await startLocalServer((req, res) =>
      req.url === '/health'
        ? sendJson(res, 200, { status: 'ok', version: '1', uptime_seconds: 3 })
        : sendJson(res, 200, MODEL_LIST, rateLimitHeaders(10, 7, 2_000_000_000)),
    );
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k' });
    await client.models.list();
    await client.health.check();
    expect(client.rateLimit?.remaining).toBe(7);
  });

  it('parses only complete, numeric headers', () => {
    expect(parseRateLimit(new Headers({ 'x-ratelimit-limit': '5', 'x-ratelimit-remaining': '2' }))).toBeUndefined();
    expect(
      parseRateLimit(
        new Headers({ 'x-ratelimit-limit': '5', 'x-ratelimit-remaining': 'x', 'x-ratelimit-reset': '1800000000' }),
      ),
    ).toBeUndefined();
  });
});

describe('throttling', () => {
  /** A server allowing `limit` requests per wall-clock second, like a fixed-window limiter. */
  async function limitedServer(limit: number) {
    const perWindow = new Map<number, number>();
    let refused = 0;
    const server = await startLocalServer((_req, res) => {
      const window = Math.floor(Date.now() / 1000);
      const used = (perWindow.get(window) ?? 0) + 1;
      perWindow.set(window, used);
      const headers = rateLimitHeaders(limit, Math.max(0, limit - used), window + 1);
      if (used > limit) {
        refused++;
        return sendJson(res, 429, apiError('RATE_LIMITED', 'Too many requests'), { ...headers, 'retry-after': 1 });
      }
      return sendJson(res, 200, MODEL_LIST, headers);
    });
    return { server, perWindow, refused: () => refused };
  }

  it('waits for the reset instead of sending requests that would get 429, and N waiters do not stampede', async () => {
    const limited = await limitedServer(3);
    server = limited.server;
    const client = new InfernoClient({
      baseUrl: server.url,
      apiKey: 'k',
      maxRetries: 0, // a 429 would fail the test instead of being retried away
      rateLimit: { throttle: true, maxWait: 5_000 },
    });
    await client.models.list(); // learn the limit
    const results = await Promise.allSettled(Array.from({ length: 9 }, () => client.models.list()));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(limited.refused()).toBe(0);
    expect(server.requests).toHaveLength(10);
    expect(Math.max(...limited.perWindow.values())).toBeLessThanOrEqual(3);
    expect(limited.perWindow.size).toBeGreaterThanOrEqual(4); // 10 requests at 3 per window
  });

  it('without throttling, the same burst gets 429s', async () => {
    const limited = await limitedServer(3);
    server = limited.server;
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k', maxRetries: 0 });
    await client.models.list();
    const results = await Promise.allSettled(Array.from({ length: 9 }, () => client.models.list()));
    expect(results.filter((r) => r.status === 'rejected').length).toBeGreaterThan(0);
    expect(limited.refused()).toBeGreaterThan(0);
  });

  it('stops a throttle wait at once when aborted, sending nothing', async () => {
    const reset = Math.floor(Date.now() / 1000) + 10;
    server = await startLocalServer((_req, res) => sendJson(res, 200, MODEL_LIST, rateLimitHeaders(5, 0, reset)));
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k', rateLimit: { throttle: true } });
    await client.models.list();
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = performance.now();
    await expect(client.models.list({ signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(server.requests).toHaveLength(1);
  });

  it('throws RateLimitError at once when the reset is further away than maxWait', async () => {
    const reset = Math.floor(Date.now() / 1000) + 30;
    server = await startLocalServer((_req, res) => sendJson(res, 200, MODEL_LIST, rateLimitHeaders(5, 0, reset)));
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k', rateLimit: { throttle: true, maxWait: 2_000 } });
    await client.models.list();
    const error = (await client.models.list().catch((e: unknown) => e)) as RateLimitError;
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error.retryAfter).toBeGreaterThanOrEqual(29);
    expect(error.retryAfter).toBeLessThanOrEqual(30);
    expect(error.message).toMatch(/resets in 3\d s, longer than the throttle may wait \(2 s\)/);
    expect(server.requests).toHaveLength(1);
  });
});

describe('RateLimitTracker', () => {
  const info = (limit: number, remaining: number, resetMs: number) =>
    new Headers({
      'x-ratelimit-limit': String(limit),
      'x-ratelimit-remaining': String(remaining),
      'x-ratelimit-reset': String(resetMs / 1000),
    });

  const throttle = { throttle: true } as const;

  /** Queues `n` acquisitions and records the order they are granted in. */
  function queue(tracker: RateLimitTracker, n: number, options: Parameters<RateLimitTracker['acquire']>[0] = throttle) {
    const granted: number[] = [];
    const releases: Array<() => void> = [];
    const failures: unknown[] = [];
    for (let i = 0; i < n; i++) {
      void Promise.resolve(tracker.acquire(options)).then(
        (release) => {
          granted.push(i);
          releases.push(release);
        },
        (error: unknown) => failures.push(error),
      );
    }
    return { granted, releases, failures };
  }

  it('lets one request probe a cold client, then as many as the window has left, in FIFO order', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const tracker = new RateLimitTracker();
    const { granted, releases } = queue(tracker, 6);
    await vi.advanceTimersByTimeAsync(0);
    expect(granted).toEqual([0]); // the probe, alone
    tracker.update(info(3, 2, 1_002_000)); // its response: 2 left until the reset
    releases[0]!();
    await vi.advanceTimersByTimeAsync(0);
    expect(granted).toEqual([0, 1, 2]);
    releases[1]!();
    releases[2]!();
    await vi.advanceTimersByTimeAsync(1_999);
    expect(granted).toEqual([0, 1, 2]);
    // At the reset the next window is unknown: one probes it, its response lets the others go.
    await vi.advanceTimersByTimeAsync(1);
    expect(granted).toEqual([0, 1, 2, 3]);
    tracker.update(info(3, 2, 1_004_000));
    await vi.advanceTimersByTimeAsync(0);
    expect(granted).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('waits as long as the window takes unless maxWait is given, and a signal ends the wait', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const tracker = new RateLimitTracker();
    tracker.update(info(1, 0, 1_300_000)); // five minutes away
    const patient = queue(tracker, 1);
    const controller = new AbortController();
    const aborted = queue(tracker, 1, { throttle: true, signal: controller.signal });
    await vi.advanceTimersByTimeAsync(120_000);
    expect(patient.granted).toEqual([]);
    expect(patient.failures).toEqual([]);
    controller.abort(new Error('stop'));
    await vi.advanceTimersByTimeAsync(0);
    expect((aborted.failures[0] as Error).message).toBe('stop');
    await vi.advanceTimersByTimeAsync(180_000);
    expect(patient.granted).toEqual([0]);
  });

  it('bounds a wait by maxWait: at once when the reset is further away, else when it runs out', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const tracker = new RateLimitTracker();
    tracker.update(info(1, 0, 1_010_000));
    const far = queue(tracker, 1, { throttle: true, maxWait: 5_000 });
    await vi.advanceTimersByTimeAsync(0);
    expect(far.failures[0]).toBeInstanceOf(RateLimitError);
    expect((far.failures[0] as RateLimitError).message).toMatch(/resets in 10 s, longer than the throttle may wait \(5 s\)/);
    // A cold client's probe is in flight: the next waits for its answer, at most maxWait.
    const cold = new RateLimitTracker();
    const probe = queue(cold, 1);
    const bounded = queue(cold, 1, { throttle: true, maxWait: 500 });
    await vi.advanceTimersByTimeAsync(499);
    expect([probe.granted, bounded.failures]).toEqual([[0], []]);
    await vi.advanceTimersByTimeAsync(1);
    expect(bounded.failures[0]).toBeInstanceOf(RateLimitError);
  });

  it('caps the requests in flight with maxConcurrent, in FIFO order', async () => {
    const tracker = new RateLimitTracker();
    const { granted, releases } = queue(tracker, 4, { throttle: false, maxConcurrent: 2 });
    await new Promise((r) => setTimeout(r, 0));
    expect(granted).toEqual([0, 1]);
    releases[1]!();
    await new Promise((r) => setTimeout(r, 0));
    expect(granted).toEqual([0, 1, 2]);
  });

  it('keeps each credential apart: a per-request key neither spends nor overwrites the own state', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const tracker = new RateLimitTracker();
    tracker.update(info(1000, 999, 1_060_000));
    tracker.update(info(5, 0, 1_060_000), 'apiKey:other');
    expect(tracker.latest?.remaining).toBe(999);
    expect(tracker.latestFor('apiKey:other')?.remaining).toBe(0);
    const own = queue(tracker, 1);
    await vi.advanceTimersByTimeAsync(0);
    expect(own.granted).toEqual([0]);
  });

  it('never raises the budget from an out-of-order response of the same window', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const tracker = new RateLimitTracker();
    tracker.update(info(10, 0, 1_005_000));
    tracker.update(info(10, 4, 1_005_000)); // a late response from earlier in the window
    expect(tracker.latest?.remaining).toBe(4);
    const { granted } = queue(tracker, 1);
    await vi.advanceTimersByTimeAsync(100);
    expect(granted).toEqual([]);
  });
});
