import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  AbortError,
  ConnectionError,
  InfernoError,
  InfernoClient,
  InternalServerError,
  RateLimitError,
  type RetryEvent,
  ServiceUnavailableError,
  TimeoutError,
} from '../src/index.js';
import { apiError, type LocalServer, MODEL_LIST, sendJson, startLocalServer } from './helpers/http.js';

// Small, jitter-free delays keep the timing assertions exact and the tests fast.
const fastRetry = { baseDelay: 40, maxDelay: 1_000, jitter: 0 };
const newUser = { username: 'alice', password: 'correct-horse-battery' };
const user = {
  id: '0d9c4f3e-3f5b-4a37-9e0b-6a2f1d1c2b3a',
  username: 'alice',
  role: 'user',
  permissions: [],
  disabled: false,
  created_at: '2026-11-28T06:00:00.000Z',
  updated_at: '2026-11-28T06:00:00.000Z',
};

let server: LocalServer | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await server?.close();
  server = undefined;
});

function client(options: Partial<ConstructorParameters<typeof InfernoClient>[0]> = {}) {
  return new InfernoClient({ baseUrl: server!.url, apiKey: 'inf_test', retry: fastRetry, ...options });
}

function gaps(): number[] {
  const times = server!.requests.map((r) => r.at);
  return times.slice(1).map((t, i) => t - times[i]!);
}

describe('retries', () => {
  it('retries a GET after 503 and returns the data of the second attempt', async () => {
    server = await startLocalServer((_req, res, i) =>
      i === 0 ? sendJson(res, 503, apiError('SERVICE_UNAVAILABLE', 'loading')) : sendJson(res, 200, MODEL_LIST),
    );
    const events: RetryEvent[] = [];
    const models = await client({ onRetry: (e) => events.push(e) }).models.list();
    expect(models).toEqual(MODEL_LIST);
    expect(server.requests).toHaveLength(2);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ operation: 'listModels', retry: 1, maxRetries: 2, delay: 40, reason: 'backoff' });
    expect(events[0]!.error).toBeInstanceOf(ServiceUnavailableError);
    expect(gaps()[0]).toBeGreaterThanOrEqual(38);
  });

  it('makes exactly 1 + maxRetries attempts, backing off exponentially, then throws the last error', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 503, apiError('SERVICE_UNAVAILABLE', 'busy')));
    const delays: number[] = [];
    const error = await client({ onRetry: (e) => delays.push(e.delay) })
      .models.list()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(server.requests).toHaveLength(3);
    expect(delays).toEqual([40, 80]);
    const [first, second] = gaps();
    expect(first).toBeGreaterThanOrEqual(38);
    expect(second).toBeGreaterThanOrEqual(78);
  });

  it('does not retry at all with maxRetries: 0', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 503, apiError('SERVICE_UNAVAILABLE', 'busy')));
    await expect(client({ maxRetries: 0 }).models.list()).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect(server.requests).toHaveLength(1);
  });

  it('lets a request option override the client: maxRetries per request', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 502, 'Bad Gateway'));
    await expect(client({ maxRetries: 0 }).models.list({ maxRetries: 3 })).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect(server.requests).toHaveLength(4);
  });

  it('does not retry a POST without an Idempotency-Key that got 500 (it may have been processed)', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 500, apiError('INTERNAL_ERROR', 'boom')));
    await expect(client().users.create(newUser, { idempotencyKey: false })).rejects.toBeInstanceOf(InternalServerError);
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]!.method).toBe('POST');
    expect(server.requests[0]!.headers['idempotency-key']).toBeUndefined();
  });

  it('retries a POST with its Idempotency-Key after a 500, the same key on every attempt', async () => {
    server = await startLocalServer((_req, res, i) => (i < 2 ? sendJson(res, 500, apiError('INTERNAL_ERROR', 'boom')) : sendJson(res, 201, user)));
    await expect(client().users.create(newUser)).resolves.toEqual(user);
    const keys = server.requests.map((r) => r.headers['idempotency-key']);
    expect(keys).toHaveLength(3);
    expect(keys[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(keys).size).toBe(1);
    // The next call is another logical request: another key.
    await client().users.create(newUser);
    expect(server.requests[3]!.headers['idempotency-key']).not.toBe(keys[0]);
  });

  it('does not retry a PATCH that got 502 or 504', async () => {
    server = await startLocalServer((_req, res, i) => sendJson(res, i === 0 ? 502 : 504, ''));
    await expect(client().users.update(user.id, { disabled: true })).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect(server.requests).toHaveLength(1);
  });

  it('retries a POST that got 503 (proof it was not processed), sending the same body again', async () => {
    server = await startLocalServer((_req, res, i) =>
      i === 0 ? sendJson(res, 503, apiError('SERVICE_UNAVAILABLE', 'queue full')) : sendJson(res, 201, user),
    );
    await expect(client().users.create(newUser)).resolves.toEqual(user);
    expect(server.requests.map((r) => r.method)).toEqual(['POST', 'POST']);
    expect(server.requests.map((r) => JSON.parse(r.body))).toEqual([newUser, newUser]);
  });

  it('retries after a dropped connection (socket destroyed before any response)', async () => {
    server = await startLocalServer((req, res, i) => {
      if (i === 0) req.socket.destroy();
      else sendJson(res, 200, MODEL_LIST);
    });
    await expect(client().models.list()).resolves.toEqual(MODEL_LIST);
    expect(server.requests).toHaveLength(2);
  });

  it('retries a POST after a connection failure before any response', async () => {
    server = await startLocalServer((req, res, i) => {
      if (i === 0) req.socket.destroy();
      else sendJson(res, 201, user);
    });
    await expect(client().users.create(newUser)).resolves.toEqual(user);
    expect(server.requests).toHaveLength(2);
  });

  it('throws ConnectionError, with the cause, when the connection keeps dropping', async () => {
    server = await startLocalServer((req) => {
      req.socket.destroy();
    });
    const error = await client({ maxRetries: 1 }).models.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).cause).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/^GET http:\/\/127\.0\.0\.1:\d+\/api\/v1\/models failed/);
    expect(server.requests).toHaveLength(2);
  });

  it('throws ConnectionError when nothing listens', async () => {
    server = await startLocalServer(() => undefined);
    const url = server.url;
    await server.close();
    server = undefined;
    const error = await new InfernoClient({ baseUrl: url, apiKey: 'k', maxRetries: 0 }).models.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
  });
});

describe('timeouts', () => {
  it('ends a slow response with TimeoutError after `timeout`', async () => {
    server = await startLocalServer((_req, res) => {
      setTimeout(() => sendJson(res, 200, MODEL_LIST), 2_000);
    });
    const started = performance.now();
    const error = await client({ maxRetries: 0 }).models.list({ timeout: 150 }).catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as TimeoutError).timeout).toBe(150);
    expect(elapsed).toBeGreaterThanOrEqual(145);
    expect(elapsed).toBeLessThan(1_000);
  });

  it('retries a timed-out GET but not a timed-out POST without an Idempotency-Key', async () => {
    server = await startLocalServer((_req, res) => {
      setTimeout(() => sendJson(res, 200, {}), 2_000);
    });
    await expect(client({ timeout: 100, maxRetries: 1 }).models.list()).rejects.toBeInstanceOf(TimeoutError);
    expect(server.requests).toHaveLength(2);
    await expect(client({ timeout: 100, maxRetries: 1 }).users.create(newUser, { idempotencyKey: false })).rejects.toBeInstanceOf(TimeoutError);
    expect(server.requests).toHaveLength(3);
    await expect(client({ timeout: 100, maxRetries: 1 }).users.create(newUser)).rejects.toBeInstanceOf(TimeoutError);
    expect(server.requests).toHaveLength(5);
  });
});

describe('Retry-After', () => {
  it('waits the seconds a 429 asks for, instead of backoff', async () => {
    server = await startLocalServer((_req, res, i) =>
      i === 0
        ? sendJson(res, 429, apiError('RATE_LIMITED', 'slow down'), { 'retry-after': 1 })
        : sendJson(res, 200, MODEL_LIST),
    );
    const events: RetryEvent[] = [];
    await expect(client({ onRetry: (e) => events.push(e) }).models.list()).resolves.toEqual(MODEL_LIST);
    expect(events.map((e) => [e.reason, e.delay])).toEqual([['retry-after', 1_000]]);
    expect(gaps()[0]).toBeGreaterThanOrEqual(990);
  });

  it('honours Retry-After given as an HTTP date', async () => {
    server = await startLocalServer((_req, res, i) =>
      i === 0
        ? sendJson(res, 503, apiError('SERVICE_UNAVAILABLE', 'later'), {
            'retry-after': new Date(Date.now() + 2_000).toUTCString(),
          })
        : sendJson(res, 200, MODEL_LIST),
    );
    const events: RetryEvent[] = [];
    await client({ onRetry: (e) => events.push(e) }).models.list();
    expect(events[0]!.reason).toBe('retry-after');
    // An HTTP date has whole seconds: the wait is between 1 and 2 s.
    expect(events[0]!.delay).toBeGreaterThan(900);
    expect(events[0]!.delay).toBeLessThanOrEqual(2_000);
    expect(gaps()[0]).toBeGreaterThanOrEqual(events[0]!.delay - 10);
  });

  it('throws at once when Retry-After is beyond maxRetryAfter, with the wait in the error', async () => {
    server = await startLocalServer((_req, res) =>
      sendJson(res, 429, apiError('RATE_LIMITED', 'Too many requests'), { 'retry-after': 120 }),
    );
    const started = performance.now();
    const error = await client({ retry: { ...fastRetry, maxRetryAfter: 5_000 } })
      .models.list()
      .catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(500);
    expect(server.requests).toHaveLength(1);
    expect(error).toBeInstanceOf(RateLimitError);
    expect((error as RateLimitError).retryAfter).toBe(120);
    expect((error as Error).message).toBe(
      'Too many requests (the server asked to retry after 120 s, more than maxRetryAfter 5 s)',
    );
  });
});

describe('cancellation', () => {
  it('stops at once when aborted during a backoff wait', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 503, apiError('SERVICE_UNAVAILABLE', 'busy')));
    const controller = new AbortController();
    const started = performance.now();
    const pending = client({ retry: { baseDelay: 10_000, jitter: 0 } }).models.list({ signal: controller.signal });
    setTimeout(() => controller.abort(), 150);
    const error = await pending.catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(error).toBeInstanceOf(AbortError);
    expect(error).toBeInstanceOf(InfernoError);
    expect((error as AbortError).name).toBe('AbortError');
    expect((error as AbortError).cause).toBeInstanceOf(DOMException);
    expect(server.requests).toHaveLength(1);
  });

  it('rejects with the reason the caller aborted with, while the request is in flight', async () => {
    server = await startLocalServer((_req, res) => {
      setTimeout(() => sendJson(res, 200, MODEL_LIST), 2_000);
    });
    const reason = new Error('user navigated away');
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 100);
    const error = await client().models.list({ signal: controller.signal }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortError);
    expect((error as AbortError).cause).toBe(reason);
    expect(server.requests).toHaveLength(1);
  });

  it('honours the client-level signal too', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 200, MODEL_LIST));
    const controller = new AbortController();
    controller.abort();
    await expect(client({ signal: controller.signal }).models.list()).rejects.toMatchObject({ name: 'AbortError' });
    expect(server.requests).toHaveLength(0);
  });
});

describe('hooks and logging', () => {
  it('logs one line per retry', async () => {
    server = await startLocalServer((_req, res, i) =>
      i < 2 ? sendJson(res, 503, apiError('SERVICE_UNAVAILABLE', 'model loading')) : sendJson(res, 200, MODEL_LIST),
    );
    const info = vi.fn();
    await client({ logger: { info } }).models.list();
    expect(info.mock.calls.map((c) => c[0])).toEqual([
      'Retrying listModels (retry 1 of 2) in 40 ms after ServiceUnavailableError: model loading',
      'Retrying listModels (retry 2 of 2) in 80 ms after ServiceUnavailableError: model loading',
    ]);
  });
});

describe('backoff arithmetic with fake timers', () => {
  it('sends each retry exactly when its backoff ends', async () => {
    vi.useFakeTimers();
    const sent: number[] = [];
    const start = Date.now();
    // A fetch double: no network, so fake time alone drives the waits.
    const fakeFetch = async () => {
      sent.push(Date.now() - start);
      return sent.length < 4
        ? new Response(JSON.stringify(apiError('SERVICE_UNAVAILABLE', 'busy')), { status: 503 })
        : Response.json(MODEL_LIST);
    };
    const c = new InfernoClient({
      baseUrl: 'http://inferno.test',
      apiKey: 'k',
      maxRetries: 3,
      fetch: fakeFetch,
      retry: { baseDelay: 1_000, maxDelay: 3_000, jitter: 0 },
    });
    const pending = c.models.list();
    await vi.advanceTimersByTimeAsync(999);
    expect(sent).toEqual([0]);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent).toEqual([0, 1_000]);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(sent).toEqual([0, 1_000, 3_000]);
    await vi.advanceTimersByTimeAsync(2_999);
    expect(sent).toHaveLength(3); // capped at maxDelay 3,000, not 4,000
    await vi.advanceTimersByTimeAsync(1);
    expect(sent).toEqual([0, 1_000, 3_000, 6_000]);
    await expect(pending).resolves.toEqual(MODEL_LIST);
  });
});
