// The SDK against the real reference server (test/helpers/server.ts), responses checked against
// the spec's schemas throughout.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../test/helpers/server.js';
import {
  AuthenticationError,
  ConflictError,
  InfernoClient,
  type ClientOptions,
  NotFoundError,
  RateLimitError,
} from '../src/index.js';
import { responseValidator } from '../src/zod.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 1000 } });
});
afterAll(async () => {
  await server?.close();
});

function client(options: Partial<ClientOptions> = {}): InfernoClient {
  return new InfernoClient({ baseUrl: server.url, validateResponses: true, responseValidator, ...options });
}

const admin = () => ({ username: 'admin', password: server.adminPassword });

describe('against the reference server', () => {
  it('logs in with credentials when first needed and tracks the rate-limit headers', async () => {
    const c = client({ credentials: admin() });
    const me = await c.auth.me();
    expect(me.user.username).toBe('admin');
    expect(me.auth_method).toBe('jwt');
    expect(c.rateLimit?.limit).toBe(1000);
    const before = c.rateLimit!.remaining;
    await c.models.list();
    expect(c.rateLimit!.remaining).toBeLessThan(before);
    expect(c.rateLimit!.reset.getTime()).toBeGreaterThan(Date.now());
  });

  it('creates an API key, uses it, and gets AuthenticationError once it is revoked', async () => {
    const c = client({ credentials: admin() });
    const created = await c.apiKeys.create({ name: 'sdk-test', permissions: ['read_models'] });
    expect(created.key).toMatch(/^inf_/);
    const withKey = client({ apiKey: created.key });
    const me = await withKey.auth.me();
    expect(me.auth_method).toBe('api_key');
    expect(me.permissions).toEqual(['read_models']);
    await expect(withKey.models.list()).resolves.toMatchObject({ object: 'list' });
    await c.apiKeys.revoke(created.id);
    const error = await withKey.models.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as AuthenticationError).requestId).toBeTruthy();
  });

  it('logs in again after its token is revoked elsewhere, and after its own logout', async () => {
    const c = client({ credentials: admin() });
    const { token } = await c.auth.login();
    await c.models.list();
    // Revoke the client's token from outside: its next request gets a 401 and logs in again.
    await client({ token }).auth.logout();
    await expect(c.models.list()).resolves.toMatchObject({ object: 'list' });
    const renewed = await c.auth.me();
    expect(renewed.user.username).toBe('admin');
    await c.auth.logout();
    await expect(c.auth.me()).resolves.toMatchObject({ auth_method: 'jwt' });
  });

  it('manages users with typed errors', async () => {
    const c = client({ credentials: admin() });
    const user = await c.users.create({ username: 'sdk-bob', password: 'a-long-password-1', role: 'guest' });
    expect(user.role).toBe('guest');
    await expect(c.users.create({ username: 'sdk-bob', password: 'a-long-password-1' })).rejects.toBeInstanceOf(ConflictError);
    const updated = await c.users.update(user.id, { role: 'user' });
    expect(updated.role).toBe('user');
    await c.users.delete(user.id);
    await expect(c.users.get(user.id)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('generates text whole and streamed, the same for the same seed', async () => {
    const c = client({ credentials: admin() });
    const params = { model: 'demo-tiny', prompt: 'Once upon a time', max_tokens: 12, seed: 7 };
    const whole = await c.inference.create(params);
    expect(whole.usage.completion_tokens).toBeGreaterThan(0);
    let text = '';
    const names: string[] = [];
    for await (const event of c.inference.stream(params)) {
      names.push(event.event);
      if (event.event === 'token') text += event.data.text;
      else expect(event.data.finish_reason).toBe(whole.finish_reason);
    }
    expect(names.at(-1)).toBe('done');
    expect(names.filter((n) => n === 'done')).toHaveLength(1);
    expect(text).toBe(whole.text);
  });

  it('stops a stream when the loop breaks', async () => {
    const c = client({ credentials: admin() });
    let tokens = 0;
    for await (const event of c.inference.stream({ model: 'demo-tiny', prompt: 'Tell a long story', max_tokens: 400, seed: 1 })) {
      if (event.event === 'token' && ++tokens === 2) break;
    }
    expect(tokens).toBe(2);
    // The server is free for the next request at once.
    await expect(c.inference.create({ model: 'demo-tiny', prompt: 'Hi', max_tokens: 2 })).resolves.toMatchObject({ object: 'inference' });
  });

  it('embeds texts, and reads metrics, audit log and config', async () => {
    const c = client({ credentials: admin() });
    const embeddings = await c.embeddings.create({ model: 'demo-tiny', input: ['alpha', 'beta'] });
    expect(embeddings.data).toHaveLength(2);
    const metrics = await c.metrics.get();
    expect(metrics.requests_total).toBeGreaterThan(0);
    await expect(c.metrics.prometheus()).resolves.toMatch(/^# (HELP|TYPE) /m);
    const page = await c.auditLogs.list({ action: 'auth.login', limit: 5 });
    expect(page.data.length).toBeGreaterThan(0);
    const config = await c.config.get();
    expect(config).toBeTypeOf('object');
  });

  it("reads a key's usage, equal to its answers' usage (validated against the spec)", async () => {
    const c = client({ credentials: admin() });
    const created = await c.apiKeys.create({ name: 'usage', permissions: ['run_inference'] });
    const keyed = client({ apiKey: created.key });
    const answers = [await keyed.inference.create({ model: 'demo-tiny', prompt: 'One', max_tokens: 5 }), await keyed.inference.create({ model: 'demo-tiny', prompt: 'Two', max_tokens: 3 })];
    const report = await c.usage.get({ key_id: created.id, group_by: 'key,model' });
    expect(report.data).toEqual([
      {
        user_id: null,
        key_id: created.id,
        model: 'demo-tiny',
        day: null,
        requests: 2,
        prompt_tokens: answers[0]!.usage.prompt_tokens + answers[1]!.usage.prompt_tokens,
        completion_tokens: answers[0]!.usage.completion_tokens + answers[1]!.usage.completion_tokens,
        total_tokens: answers[0]!.usage.total_tokens + answers[1]!.usage.total_tokens,
      },
    ]);
    // The key itself (no read_metrics) sees its own usage too.
    expect((await keyed.usage.get()).data[0]).toMatchObject({ requests: 2 });
  });

  it('answers the health probes', async () => {
    const c = client();
    await expect(c.health.check()).resolves.toMatchObject({ status: 'ok' });
    const ready = await c.health.ready();
    expect(typeof ready.ready).toBe('boolean');
  });
});

describe('throttling against the reference server', () => {
  let limited: TestServer;
  beforeAll(async () => {
    limited = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 3 } });
  });
  afterAll(async () => {
    await limited?.close();
  });

  it('refuses locally, without a 429 from the server, once the window is spent', async () => {
    const { token } = await new InfernoClient({ baseUrl: limited.url }).auth.login({
      username: 'admin',
      password: limited.adminPassword,
    });
    const c = new InfernoClient({ baseUrl: limited.url, token, rateLimit: { throttle: true, maxWait: 1_000 } });
    let sent = 0;
    while (c.rateLimit === undefined || c.rateLimit.remaining > 0) {
      await c.models.list();
      sent++;
    }
    expect(sent).toBeLessThanOrEqual(3);
    const error = (await c.models.list().catch((e: unknown) => e)) as RateLimitError;
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error.requestId).toBeUndefined(); // thrown by the throttle, not answered by the server
    expect(error.retryAfter).toBeGreaterThan(1);
  });
  it('runs a job to completion, reads cache stats and clears the cache', async () => {
    const c = client({ credentials: admin() });
    for (let i = 0; i < 100 && !(await c.health.ready()).ready; i++) await new Promise((r) => setTimeout(r, 100));
    const request = { model: 'demo-tiny', prompt: 'Jobs', max_tokens: 8, seed: 11 };
    const job = await c.jobs.create({ requests: [request, { ...request, seed: 12 }], name: 'sdk' });
    expect(job.status).toMatch(/queued|running/);
    let done = job;
    for (let i = 0; i < 200 && (done.status === 'queued' || done.status === 'running'); i++) {
      await new Promise((r) => setTimeout(r, 50));
      done = await c.jobs.get(job.id);
    }
    expect(done.status).toBe('succeeded');
    expect(done.results.map((r) => r.status)).toEqual(['succeeded', 'succeeded']);
    const direct = await c.inference.create(request);
    expect(done.results[0]!.response!.text).toBe(direct.text);
    expect((await c.jobs.list()).data.map((j) => j.id)).toContain(job.id);
    await expect(c.jobs.cancel(job.id)).rejects.toBeInstanceOf(ConflictError);

    await c.inference.create(request); // the same seeded request again: a cache hit
    const stats = await c.cache.stats();
    expect(stats.hits).toBeGreaterThanOrEqual(1);
    expect(stats.entries).toBeGreaterThanOrEqual(1);
    await c.cache.clear();
    expect((await c.cache.stats()).entries).toBe(0);
  });
  it('uploads a model from a file path and from a stream, then deletes it', async () => {
    const { writeDemoModel } = await import('../../server/src/engine/demo-model.js');
    const { mkdtemp, readFile } = await import('node:fs/promises');
    const os = await import('node:os');
    const path = await import('node:path');
    const file = path.join(await mkdtemp(path.join(os.tmpdir(), 'sdk-upload-')), 'm.gguf');
    await writeDemoModel(file, { preset: 'tiny', seed: 5 });
    const bytes = await readFile(file);
    const c = client({ credentials: admin() });

    const fromPath = await c.models.upload({ id: 'from-path', file });
    expect(fromPath).toMatchObject({ id: 'from-path', size_bytes: bytes.length, architecture: 'llama' });

    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 65_536) controller.enqueue(new Uint8Array(bytes.subarray(i, i + 65_536)));
        controller.close();
      },
    });
    await expect(c.models.upload({ id: 'from-stream', file: stream })).resolves.toMatchObject({ id: 'from-stream', size_bytes: bytes.length });
    await expect(c.models.upload({ id: 'from-path', file })).rejects.toBeInstanceOf(ConflictError);

    await c.models.delete('from-path');
    await c.models.delete('from-stream');
    await expect(c.models.get('from-path')).rejects.toBeInstanceOf(NotFoundError);
  });
});
