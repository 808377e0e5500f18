// The SDK at scale against the reference server: a 30-call burst through the throttle at a low
// limit, response metadata on success, on a stream and on errors, pagination across pages, and
// the error hierarchy.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../test/helpers/server.js';
import { waitForReady } from '../../test/helpers/api-checks.js';
import {
  AbortError,
  APIError,
  ConnectionError,
  InfernoClient,
  InfernoError,
  NotFoundError,
  RateLimitError,
  ResponseValidationError,
  TimeoutError,
} from '../src/index.js';
import { responseValidator } from '../src/zod.js';

/** A fetch that counts the statuses it saw on the wire. */
function countingFetch() {
  const statuses: number[] = [];
  const wrapped: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    statuses.push(response.status);
    return response;
  };
  return { fetch: wrapped, statuses };
}

describe('a burst through the throttle (10 requests per 2 s window)', () => {
  const WINDOW_S = 2;
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10, 'rate_limit.window_seconds': WINDOW_S } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('30 concurrent calls on a cold client all succeed, with at most one 429 on the wire, in about three windows', async () => {
    const admin = new InfernoClient({ baseUrl: server.url, credentials: { username: 'admin', password: server.adminPassword } });
    const { key } = await admin.apiKeys.create({ name: 'burst', permissions: ['read_models'] });
    const wire = countingFetch();
    const client = new InfernoClient({ baseUrl: server.url, apiKey: key, fetch: wire.fetch, rateLimit: { throttle: true } });
    const started = performance.now();
    const results = await Promise.allSettled(Array.from({ length: 30 }, () => client.models.list()));
    const elapsed = performance.now() - started;
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(wire.statuses.filter((s) => s === 429).length).toBeLessThanOrEqual(1);
    expect(wire.statuses.filter((s) => s === 200)).toHaveLength(30);
    // 30 at 10 per window need two refills at the least; the reset header is in whole seconds,
    // so each wait may run up to a second long. Generous: well under the minute a retry storm takes.
    expect(elapsed).toBeGreaterThan(2 * WINDOW_S * 1000 - 1000);
    expect(elapsed).toBeLessThan(3 * (WINDOW_S + 1) * 1000 + 5000);
  });

  it('per-request credentials keep their own rate-limit state', async () => {
    const admin = new InfernoClient({ baseUrl: server.url, credentials: { username: 'admin', password: server.adminPassword } });
    // Budgets are per user, so the other credential belongs to another user.
    await admin.users.create({ username: 'other', password: 'other-password-1', role: 'user' });
    const other = new InfernoClient({ baseUrl: server.url, credentials: { username: 'other', password: 'other-password-1' } });
    const { key } = await other.apiKeys.create({ name: 'other', permissions: ['read_models'] });
    const client = new InfernoClient({ baseUrl: server.url, credentials: { username: 'admin', password: server.adminPassword } });
    await client.models.list();
    const own = client.rateLimit!.remaining;
    const { rateLimit } = await client.models.list({ apiKey: key }).withResponse();
    // The other user spent one on login's key creation already; this call spends the next.
    expect(rateLimit?.remaining).toBe(8);
    expect(client.rateLimit!.remaining).toBeLessThanOrEqual(own);
    expect(client.rateLimit!.remaining).not.toBe(8);
  });
});

describe('metadata, pagination and errors', () => {
  let server: TestServer;
  let client: InfernoClient;
  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 100_000 } });
    client = new InfernoClient({ baseUrl: server.url, credentials: { username: 'admin', password: server.adminPassword } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('withResponse() gives the data with status, headers, request id and rate limit; asResponse() the raw response', async () => {
    const { data, status, headers, requestId, rateLimit, response } = await client.models.list().withResponse();
    expect(data.object).toBe('list');
    expect(status).toBe(200);
    expect(requestId).toBe(headers.get('x-request-id'));
    expect(requestId).toBeTruthy();
    expect(rateLimit?.limit).toBe(100_000);
    expect(response).toBeInstanceOf(Response);
    const raw = await client.models.list().asResponse();
    expect(raw.bodyUsed).toBe(false);
    expect((await raw.json()).object).toBe('list');
    // Plain await still gives the data.
    expect((await client.models.list()).object).toBe('list');
  });

  it('a stream tells its response headers and request id; errors keep theirs', async () => {
    await waitForReady(server.url);
    const stream = client.inference.stream({ model: 'demo-tiny', prompt: 'Hi', max_tokens: 4, seed: 1 });
    const { requestId, headers, status } = await stream.withResponse();
    expect(status).toBe(200);
    expect(headers.get('content-type')).toMatch(/text\/event-stream/);
    expect(requestId).toBeTruthy();
    const events = [];
    for await (const event of stream) events.push(event.event);
    expect(events.at(-1)).toBe('done');
    const error = await client.models.get('missing').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotFoundError);
    expect((error as NotFoundError).requestId).toBeTruthy();
  });

  it('iterates jobs across pages, page by page and item by item', async () => {
    const created: string[] = [];
    for (let i = 0; i < 5; i++) {
      const job = await client.jobs.create({ name: `page-${i}`, requests: [{ model: 'demo-tiny', prompt: 'Hi', max_tokens: 1 }] });
      created.push(job.id);
    }
    const raw = await client.jobs.list({ limit: 2 }).asResponse();
    expect((await raw.json()).data).toHaveLength(2);
    const first = await client.jobs.list({ limit: 2 });
    expect(first.data).toHaveLength(2);
    expect(first.hasNextPage()).toBe(true);
    const second = await first.getNextPage();
    expect(second.data.map((j) => j.id)).not.toContain(first.data[0]!.id);
    const pageSizes: number[] = [];
    for await (const page of client.jobs.list({ limit: 2 }).pages()) pageSizes.push(page.data.length);
    expect(pageSizes.length).toBeGreaterThanOrEqual(3);
    const all: string[] = [];
    for await (const job of client.jobs.list({ limit: 2 })) all.push(job.id);
    expect(new Set(all).size).toBe(all.length);
    expect(all).toEqual(expect.arrayContaining(created));
    // The audit log pages the same way.
    let audited = 0;
    for await (const entry of client.auditLogs.list({ limit: 3 })) {
      expect(typeof entry.action).toBe('string');
      if (++audited > 7) break;
    }
    expect(audited).toBeGreaterThan(3);
  });

  it('reads the typed configuration, valid against its schema', async () => {
    const validating = new InfernoClient({
      baseUrl: server.url,
      credentials: { username: 'admin', password: server.adminPassword },
      validateResponses: true,
      responseValidator,
    });
    const config = await validating.config.get();
    const perMinute: number = config.rate_limit.requests_per_minute;
    expect(perMinute).toBe(100_000);
    expect(config.idempotency.ttl_seconds).toBe(86_400);
    expect(config.auth.jwt_secret).toBe('(set)');
  });

  it('every error is an InfernoError: API errors, connection errors, timeouts, validation and aborts', async () => {
    const notFound = await client.models.get('missing').catch((e: unknown) => e);
    expect(notFound).toBeInstanceOf(APIError);
    expect(notFound).toBeInstanceOf(InfernoError);
    const down = await new InfernoClient({ baseUrl: 'http://127.0.0.1:1', apiKey: 'k', maxRetries: 0 }).models.list().catch((e: unknown) => e);
    expect(down).toBeInstanceOf(ConnectionError);
    expect(down).toBeInstanceOf(InfernoError);
    expect(new TimeoutError('t', 1)).toBeInstanceOf(ConnectionError);
    expect(new ResponseValidationError('op', [])).toBeInstanceOf(InfernoError);
    expect(new RateLimitError({ status: 429, headers: new Headers(), body: null })).toBeInstanceOf(APIError);
    const controller = new AbortController();
    controller.abort();
    const aborted = await client.models.list({ signal: controller.signal }).catch((e: unknown) => e);
    expect(aborted).toBeInstanceOf(AbortError);
    expect(aborted).toBeInstanceOf(InfernoError);
    expect((aborted as Error).name).toBe('AbortError');
  });
});
