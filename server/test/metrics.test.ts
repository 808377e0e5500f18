/**
 * Prometheus metrics and usage accounting, end to end on the real engine: a scripted workload
 * (native and OpenAI inferences with known `usage`, a cancelled stream, a 429, a 401, a cache hit)
 * moves every counter by exactly what the answers say, parsed with a real Prometheus text
 * parser; labels stay bounded under 1,000 distinct paths and keys; `/api/v1/usage` sums equal the
 * answers' `usage` fields and survive a restart; inference log lines carry tokens and speed.
 */
import { copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../src/auth/api-keys.js';
import { LabelBudget } from '../src/observability/labels.js';
import { eventually, expectApiError, waitForReady } from '../../test/helpers/api-checks.js';
import { scrape, type Scrape } from '../../test/helpers/prometheus.js';
import { createApiKey, createUser } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

const MODEL = 'demo-tiny';
/** A second model (a copy of the demo file) that only the cancelled stream uses, so demo-tiny's counters are exact. */
const CANCEL_MODEL = 'demo-cancel';
const RPM = 1000;
const BURST = 5;
const PROMPT = 'Count the stars:';

interface Answer {
  model: string;
  api: 'native' | 'openai';
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

async function* sseData(response: Response): AsyncGenerator<{ event: string; data: any }> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (data !== undefined) yield { event, data: JSON.parse(data) };
    }
  }
}

describe('metrics and usage after a known workload', () => {
  let server: TestServer;
  let adminToken: string;
  let infKey: { id: string; key: string };
  let openaiKey: { id: string; key: string };
  let burstKey: { id: string; key: string };
  let metricsKey: { id: string; key: string };
  let userId: string;
  let userToken: string;
  const answers: Answer[] = [];
  let cancelPromptTokens = 0;
  let warmUp: Answer['usage'];
  let cacheHit: Answer['usage'];
  let cancelledTokenEvents = 0;
  let before: Scrape;
  let after: Scrape;
  const totals = (list: Answer[]) => ({
    requests: list.length,
    prompt: list.reduce((n, a) => n + a.usage.prompt_tokens, 0),
    completion: list.reduce((n, a) => n + a.usage.completion_tokens, 0),
  });

  const infer = async (body: Record<string, unknown>, key = infKey.key) => {
    const res = await call(server.url, 'POST', '/api/v1/inference', { apiKey: key, body: { model: MODEL, prompt: PROMPT, max_tokens: 12, ...body } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res;
  };

  beforeAll(async () => {
    // Usage is written only when asked for (GET /api/v1/usage) and at shutdown here, never by the timer.
    const first = await startTestServer({ settings: { 'rate_limit.requests_per_minute': RPM, 'engine.parallel': 2, 'usage.flush_interval_seconds': 3600 } });
    await waitForReady(first.url);
    copyFileSync(path.join(first.modelsDir, `${MODEL}.gguf`), path.join(first.modelsDir, `${CANCEL_MODEL}.gguf`));
    server = first;
    adminToken = await login(server.url);
    const make = (name: string, permissions: string[]) => createApiKey(server.url, { token: adminToken }, { name, permissions });
    infKey = await make('inference', ['run_inference', 'use_streaming']);
    openaiKey = await make('openai', ['run_inference', 'read_models']);
    // Budgets are per user: the burst key has a lower budget of its own, so it alone runs out.
    burstKey = await createApiKey(server.url, { token: adminToken }, { name: 'burst', permissions: ['read_models'], rate_limit_per_minute: BURST });
    metricsKey = await make('metrics', ['read_metrics']);
    userId = (await createUser(server.url, { token: adminToken }, { username: 'usage-user', password: 'usage-user-password-1', role: 'guest' })).id;
    userToken = await login(server.url, 'usage-user', 'usage-user-password-1');

    // Warm-up outside the measured window: both models loaded; the cancelled prompt's length measured.
    warmUp = (await infer({})).body.usage;
    const warm = await infer({ model: CANCEL_MODEL, max_tokens: 1 });
    cancelPromptTokens = warm.body.usage.prompt_tokens;

    before = await scrape(server.url, metricsKey.key);

    // 1. Three native inferences (random sampling: not cacheable), one native stream.
    for (let i = 0; i < 3; i++) answers.push({ model: MODEL, api: 'native', usage: (await infer({ max_tokens: 6 + i })).body.usage });
    const streamed = await fetch(`${server.url}/api/v1/inference`, {
      method: 'POST',
      headers: { 'X-API-Key': infKey.key, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 10, stream: true }),
    });
    let done: any;
    for await (const e of sseData(streamed)) if (e.event === 'done') done = e.data;
    answers.push({ model: MODEL, api: 'native', usage: done.usage });

    // 2. One OpenAI chat completion through the official client.
    const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: openaiKey.key, maxRetries: 0 });
    const chat = await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 9 });
    answers.push({ model: MODEL, api: 'openai', usage: { prompt_tokens: chat.usage!.prompt_tokens, completion_tokens: chat.usage!.completion_tokens, total_tokens: chat.usage!.total_tokens } });

    // 3. A cache miss, then the same request again: a hit (no generation, usage as answered).
    const miss = await infer({ seed: 7, max_tokens: 8 });
    expect(miss.headers.get('x-cache')).toBe('miss');
    answers.push({ model: MODEL, api: 'native', usage: miss.body.usage });
    const hit = await infer({ seed: 7, max_tokens: 8 });
    expect(hit.headers.get('x-cache')).toBe('hit');
    expect(hit.body.usage).toEqual(miss.body.usage);
    cacheHit = hit.body.usage;

    // 4. A stream cancelled after its first token, on the other model.
    const controller = new AbortController();
    const cancelled = await fetch(`${server.url}/api/v1/inference`, {
      method: 'POST',
      headers: { 'X-API-Key': infKey.key, 'Content-Type': 'application/json' },
      // Greedy: the demo model never reaches its end of text this early, so the stream is still
      // generating when it is cancelled (sampled, it sometimes ended within one write).
      body: JSON.stringify({ model: CANCEL_MODEL, prompt: PROMPT, max_tokens: 4000, temperature: 0, stream: true }),
      signal: controller.signal,
    });
    for await (const e of sseData(cancelled)) {
      if (e.event === 'token') cancelledTokenEvents++;
      if (cancelledTokenEvents >= 1) break;
    }
    controller.abort();
    await eventually(async () => expect((await server.telemetry.metrics!.summary()).inference.cancelled_total).toBe(1), 20_000);

    // 5. A 429: one key past its budget. 6. A 401: a key that does not exist.
    for (let i = 0; i < BURST; i++) expect((await call(server.url, 'GET', '/api/v1/models', { apiKey: burstKey.key })).status).toBe(200);
    expectApiError(await call(server.url, 'GET', '/api/v1/models', { apiKey: burstKey.key }), 429, 'RATE_LIMITED');
    expectApiError(await call(server.url, 'GET', '/api/v1/models', { apiKey: `inf_${'0'.repeat(40)}` }), 401, 'AUTHENTICATION_FAILED');

    after = await scrape(server.url, metricsKey.key);
  }, 120_000);
  afterAll(async () => {
    await server?.close();
  });

  const delta = (name: string, labels: Record<string, string> = {}) => after.value(name, labels) - before.value(name, labels);
  const countDelta = (name: string, labels: Record<string, string> = {}) => after.count(name, labels) - before.count(name, labels);

  it('token counters moved by the sums of the answers, per API family', () => {
    for (const api of ['native', 'openai'] as const) {
      const t = totals(answers.filter((a) => a.api === api));
      expect(delta('inferno_prompt_tokens_total', { model: MODEL, api }), api).toBe(t.prompt);
      expect(delta('inferno_generated_tokens_total', { model: MODEL, api }), api).toBe(t.completion);
    }
    // The cache hit evaluated nothing; the cancelled stream evaluated its prompt and generated at least what it sent.
    expect(delta('inferno_prompt_tokens_total', { model: CANCEL_MODEL })).toBe(cancelPromptTokens);
    expect(delta('inferno_generated_tokens_total', { model: CANCEL_MODEL })).toBeGreaterThanOrEqual(cancelledTokenEvents);
  });

  it('requests by finish reason, cancellations, and one histogram sample per generation', () => {
    const generations = answers.length; // the cache hit is not one
    expect(delta('inferno_inference_requests_total', { model: MODEL })).toBe(generations);
    expect(delta('inferno_inference_requests_total', { model: MODEL, api: 'openai' })).toBe(1);
    expect(delta('inferno_inference_requests_total', { model: MODEL, finish_reason: 'cancelled' })).toBe(0);
    expect(delta('inferno_inference_requests_total', { model: CANCEL_MODEL, finish_reason: 'cancelled' })).toBe(1);
    expect(delta('inferno_generations_cancelled_total')).toBe(1);
    expect(delta('inferno_generations_cancelled_total', { model: CANCEL_MODEL, api: 'native' })).toBe(1);
    expect(countDelta('inferno_generation_duration_seconds', { model: MODEL })).toBe(generations);
    expect(countDelta('inferno_time_to_first_token_seconds', { model: MODEL })).toBe(answers.filter((a) => a.usage.completion_tokens > 0).length);
    expect(countDelta('inferno_time_per_output_token_seconds', { model: MODEL })).toBe(answers.filter((a) => a.usage.completion_tokens > 1).length);
    expect(countDelta('inferno_queue_wait_seconds', { model: MODEL })).toBe(generations);
    expect(countDelta('inferno_queue_wait_seconds', { model: CANCEL_MODEL })).toBe(1);
    // Demo tokens take well under a millisecond: the per-token histogram resolves them.
    expect(after.sum('inferno_time_per_output_token_seconds', { model: MODEL })).toBeGreaterThan(0);
  });

  it('HTTP requests by route template, method and status, with a latency sample each', () => {
    const inferenceRequests = answers.filter((a) => a.api === 'native').length + 2; // + the cache hit and the cancelled stream
    expect(delta('inferno_http_requests_total', { route: '/api/v1/inference', method: 'POST', status: '200' })).toBe(inferenceRequests);
    expect(delta('inferno_http_requests_total', { route: '/v1/chat/completions', method: 'POST', status: '200' })).toBe(1);
    expect(delta('inferno_http_requests_total', { route: '/api/v1/models', method: 'GET', status: '200' })).toBe(BURST);
    // Refused before routing, still under their route's template.
    expect(delta('inferno_http_requests_total', { route: '/api/v1/models', method: 'GET', status: '429' })).toBe(1);
    expect(delta('inferno_http_requests_total', { route: '/api/v1/models', method: 'GET', status: '401' })).toBe(1);
    expect(countDelta('inferno_http_request_duration_seconds', { route: '/api/v1/inference', method: 'POST' })).toBe(inferenceRequests);
    expect(countDelta('inferno_http_request_duration_seconds', { route: '/api/v1/models', method: 'GET' })).toBe(BURST + 2);
    // The scrape itself: the first one is answered before the second is taken.
    expect(delta('inferno_http_requests_total', { route: '/metrics', method: 'GET', status: '200' })).toBe(1);
  });

  it('security: the 429 by principal type, the 401 by kind', () => {
    expect(delta('inferno_rate_limited_total')).toBe(1);
    expect(delta('inferno_rate_limited_total', { principal: 'api_key' })).toBe(1);
    expect(delta('inferno_authentication_failures_total')).toBe(1);
    expect(delta('inferno_authentication_failures_total', { kind: 'api_key' })).toBe(1);
    expect(delta('inferno_login_lockouts_total')).toBe(0);
  });

  it('cache and engine state', () => {
    expect(delta('inferno_cache_hits_total')).toBe(1);
    expect(delta('inferno_cache_misses_total')).toBe(1);
    expect(after.value('inferno_cache_entries')).toBe(1);
    expect(after.value('inferno_cache_bytes')).toBeGreaterThan(64);
    expect(after.value('inferno_models_loaded')).toBe(2);
    expect(after.value('inferno_sequences_total', { model: MODEL })).toBe(2);
    expect(after.value('inferno_sequences_busy')).toBe(0);
    expect(after.value('inferno_queue_depth')).toBe(0);
    expect(after.count('inferno_model_load_seconds', { model: MODEL })).toBe(1);
    expect(after.count('inferno_model_load_seconds', { model: CANCEL_MODEL })).toBe(1);
    expect(after.value('inferno_model_load_failures_total')).toBe(0);
  });

  it("exposes Node's process metrics and types every family", () => {
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']) {
      expect(after.families.has(name), name).toBe(true);
    }
    expect(after.family('inferno_http_requests_total').type).toBe('COUNTER');
    expect(after.family('inferno_time_to_first_token_seconds').type).toBe('HISTOGRAM');
    expect(after.family('inferno_queue_depth').type).toBe('GAUGE');
    expect(after.value('inferno_build_info', { version: '0.1.0' })).toBe(1);
  });

  it('the JSON summary is computed from the same registry', async () => {
    const res = await call(server.url, 'GET', '/api/v1/metrics', { apiKey: metricsKey.key });
    expect(res.status).toBe(200);
    const summary = res.body;
    const now = await scrape(server.url, metricsKey.key);
    expect(summary.inference.prompt_tokens_total).toBe(now.value('inferno_prompt_tokens_total'));
    expect(summary.inference.generated_tokens_total).toBe(now.value('inferno_generated_tokens_total'));
    expect(summary.inference.cancelled_total).toBe(1);
    expect(summary.inference.by_api.openai).toBe(1);
    expect(summary.inference.time_to_first_token_ms.count).toBe(now.count('inferno_time_to_first_token_seconds'));
    expect(summary.inference.models.find((m: any) => m.model === MODEL).prompt_tokens_total).toBe(now.value('inferno_prompt_tokens_total', { model: MODEL }));
    expect(summary.security.rate_limited_by_principal).toEqual({ api_key: 1 });
    expect(summary.cache).toMatchObject({ hits_total: 1, misses_total: 1, entries: 1 });
    expect(summary.engine).toMatchObject({ models_loaded: 2, sequences_total: 4, sequences_busy: 0, queue_depth: 0, model_load_failures_total: 0 });
    expect(summary.rate_limited_total).toBe(1);
    const d = summary.inference.time_to_first_token_ms;
    expect(d.p50).toBeGreaterThan(0);
    expect(d.p50).toBeLessThanOrEqual(d.p95);
    expect(d.p95).toBeLessThanOrEqual(d.p99);
  });

  it('embeddings: requests, inputs and tokens per API family, and usage for the key', async () => {
    const embedKey = await createApiKey(server.url, { token: adminToken }, { name: 'embed', permissions: ['run_inference'] });
    const start = await scrape(server.url, metricsKey.key);
    const native = await call(server.url, 'POST', '/api/v1/embeddings', { apiKey: embedKey.key, body: { model: MODEL, input: ['one', 'two words', 'three small words'] } });
    expect(native.status, JSON.stringify(native.body)).toBe(200);
    const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: embedKey.key, maxRetries: 0 });
    const viaOpenAI = await openai.embeddings.create({ model: MODEL, input: 'a single text' });
    const end = await scrape(server.url, metricsKey.key);
    const moved = (name: string, labels: Record<string, string>) => end.value(name, labels) - start.value(name, labels);
    expect(moved('inferno_embedding_requests_total', { model: MODEL, api: 'native' })).toBe(1);
    expect(moved('inferno_embedding_inputs_total', { model: MODEL, api: 'native' })).toBe(3);
    expect(moved('inferno_embedding_tokens_total', { model: MODEL, api: 'native' })).toBe(native.body.usage.prompt_tokens);
    expect(moved('inferno_embedding_requests_total', { model: MODEL, api: 'openai' })).toBe(1);
    expect(moved('inferno_embedding_tokens_total', { model: MODEL, api: 'openai' })).toBe(viaOpenAI.usage.prompt_tokens);
    // Embeddings are no generations.
    expect(moved('inferno_prompt_tokens_total', { model: MODEL })).toBe(0);
    const usage = await call(server.url, 'GET', `/api/v1/usage?key_id=${embedKey.id}`, { token: adminToken });
    expect(usage.body.data[0]).toMatchObject({ requests: 2, prompt_tokens: native.body.usage.prompt_tokens + viaOpenAI.usage.prompt_tokens, completion_tokens: 0 });
  });

  it('a batch job: jobs by state, items processed, generations under api="job", usage for its owner', async () => {
    const jobStart = await scrape(server.url, metricsKey.key);
    const submitted = await call(server.url, 'POST', '/api/v1/jobs', { token: adminToken, body: { requests: [{ model: MODEL, prompt: PROMPT, max_tokens: 5 }, { model: MODEL, prompt: 'Two', max_tokens: 4 }] } });
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(202);
    const job = await eventually(async () => {
      const res = await call(server.url, 'GET', `/api/v1/jobs/${submitted.body.id}`, { token: adminToken });
      expect(res.body.status).toBe('succeeded');
      return res.body;
    }, 20_000);
    const jobDone = await scrape(server.url, metricsKey.key);
    const jobUsage = job.results.map((r: any) => r.response.usage);
    expect(jobDone.value('inferno_jobs', { state: 'succeeded' }) - jobStart.value('inferno_jobs', { state: 'succeeded' })).toBe(1);
    expect(jobDone.value('inferno_jobs', { state: 'queued' })).toBe(0);
    expect(jobDone.value('inferno_job_items_processed_total', { outcome: 'succeeded' })).toBe(2);
    expect(jobDone.value('inferno_inference_requests_total', { api: 'job' })).toBe(2);
    expect(jobDone.value('inferno_prompt_tokens_total', { api: 'job' })).toBe(jobUsage.reduce((n: number, u: any) => n + u.prompt_tokens, 0));
    expect(jobDone.value('inferno_generated_tokens_total', { api: 'job' })).toBe(jobUsage.reduce((n: number, u: any) => n + u.completion_tokens, 0));
    expect(jobDone.count('inferno_generation_duration_seconds', { api: 'job' })).toBe(2);
    // Usage: the owner's, through no key.
    const admin = (await server.store.getUserByUsername('admin'))!.id;
    const res = await call(server.url, 'GET', `/api/v1/usage?user_id=${admin}&group_by=key`, { token: adminToken });
    const session = res.body.data.find((r: any) => r.key_id === null);
    expect(session).toMatchObject({ requests: 2, completion_tokens: jobUsage.reduce((n: number, u: any) => n + u.completion_tokens, 0) });
  });

  it('each inference log line carries model, tokens, time to first token and tokens/s, never the prompt', () => {
    const lines = server.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request' && (l.endpoint === '/api/v1/inference' || l.endpoint === '/v1/chat/completions'));
    const generated = lines.filter((l) => !l.cached && l.model === MODEL);
    expect(generated.length).toBeGreaterThanOrEqual(answers.length);
    for (const line of generated) {
      expect(line).toMatchObject({ model: MODEL, prompt_tokens: expect.any(Number), generated_tokens: expect.any(Number), tokens_per_second: expect.any(Number), finish_reason: expect.any(String) });
      if (line.generated_tokens > 0) expect(line.time_to_first_token_ms).toBeGreaterThan(0);
    }
    expect(lines.some((l) => l.cached === true && l.model === MODEL)).toBe(true);
    expect(lines.some((l) => l.model === CANCEL_MODEL && l.finish_reason === 'cancelled')).toBe(true);
    const dump = server.logs.join('\n');
    expect(dump).not.toContain(PROMPT);
    expect(dump).not.toContain('Count the stars');
  });

  describe('usage accounting', () => {
    const usage = async (query: Record<string, string>, auth: { apiKey?: string; token?: string } = { token: adminToken }) => {
      const res = await call(server.url, 'GET', `/api/v1/usage?${new URLSearchParams(query)}`, auth);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body as { group_by: string[]; data: any[] };
    };
    it('per key and model, the sums equal the usage fields of the answers', async () => {
      const report = await usage({ group_by: 'key,model' });
      expect(report.group_by).toEqual(['key', 'model']);
      const row = (keyId: string, model: string) => report.data.find((r) => r.key_id === keyId && r.model === model);
      // The inference key on demo-tiny: the warm-up, the native answers and the cache hit (usage as answered).
      const native = totals([...answers.filter((a) => a.api === 'native'), { model: MODEL, api: 'native', usage: warmUp }, { model: MODEL, api: 'native', usage: cacheHit }]);
      expect(row(infKey.id, MODEL)).toEqual({ user_id: null, key_id: infKey.id, model: MODEL, day: null, requests: native.requests, prompt_tokens: native.prompt, completion_tokens: native.completion, total_tokens: native.prompt + native.completion });
      const openai = totals(answers.filter((a) => a.api === 'openai'));
      expect(row(openaiKey.id, MODEL)).toMatchObject({ requests: 1, prompt_tokens: openai.prompt, completion_tokens: openai.completion });
      // The cancelled stream counts what it used; the warm-up on that model too.
      const cancel = row(infKey.id, CANCEL_MODEL);
      expect(cancel.requests).toBe(2);
      expect(cancel.prompt_tokens).toBe(2 * cancelPromptTokens);
      expect(cancel.completion_tokens).toBeGreaterThanOrEqual(1 + cancelledTokenEvents);
    });

    it('agrees with the token counters of the metrics, and groups by day and user', async () => {
      const total = (await usage({ model: MODEL })).data;
      expect(total).toHaveLength(1);
      expect(total[0]).toMatchObject({ user_id: null, key_id: null, model: null, day: null });
      const byDay = await usage({ group_by: 'day' });
      expect(byDay.data).toHaveLength(1);
      expect(byDay.data[0].day).toBe(new Date().toISOString().slice(0, 10));
      const byUser = await usage({ group_by: 'user' });
      expect(byUser.data.map((r) => r.requests).reduce((a, b) => a + b, 0)).toBe(byDay.data[0].requests);
      // Outside the window: nothing.
      const future = await usage({ since: new Date(Date.now() + 2 * 3_600_000).toISOString() });
      expect(future.data[0]).toMatchObject({ requests: 0, prompt_tokens: 0, completion_tokens: 0 });
      const past = await usage({ until: new Date(Date.now() - 2 * 3_600_000).toISOString() });
      expect(past.data[0].requests).toBe(0);
    });

    it('without read_metrics a caller sees only its own usage', async () => {
      // A guest session: its own (none), and nobody else's.
      const own = await usage({}, { token: userToken });
      expect(own.data[0].requests).toBe(0);
      expectApiError(await call(server.url, 'GET', `/api/v1/usage?user_id=${await infKeyOwner()}`, { token: userToken }), 403, 'PERMISSION_DENIED');
      // A key without read_metrics: that key's usage only.
      const mine = await usage({ group_by: 'key' }, { apiKey: infKey.key });
      expect(mine.data.map((r) => r.key_id)).toEqual([infKey.id]);
      expectApiError(await call(server.url, 'GET', `/api/v1/usage?key_id=${openaiKey.id}`, { apiKey: infKey.key }), 403, 'PERMISSION_DENIED');
      expectApiError(await call(server.url, 'GET', '/api/v1/usage'), 401, 'AUTHENTICATION_FAILED');
      expect(userId).toBeTruthy();
    });
    const infKeyOwner = async () => (await server.store.getApiKey(infKey.id))!.userId;

    it('read_metrics alone (the user role, an admin key without manage_users) sees only its own usage', async () => {
      // A `user` (which holds read_metrics) that has run one request: its own row, nobody else's.
      await createUser(server.url, { token: adminToken }, { username: 'usage-plain', password: 'usage-plain-password-1', role: 'user' });
      const plain = await login(server.url, 'usage-plain', 'usage-plain-password-1');
      const plainKey = await createApiKey(server.url, { token: plain }, { name: 'plain-metrics', permissions: ['run_inference', 'read_metrics'] });
      expect((await infer({ max_tokens: 2 }, plainKey.key)).status).toBe(200);
      const owner = await infKeyOwner();
      const byUser = await usage({ group_by: 'user,key' }, { token: plain });
      expect(byUser.data.map((r) => [r.user_id, r.key_id])).toEqual([[expect.any(String), plainKey.id]]);
      expect(byUser.data[0].user_id).not.toBe(owner);
      expectApiError(await call(server.url, 'GET', `/api/v1/usage?user_id=${owner}`, { token: plain }), 403, 'PERMISSION_DENIED');
      // Its key with read_metrics: that key's usage only.
      expect((await usage({ group_by: 'key' }, { apiKey: plainKey.key })).data.map((r) => r.key_id)).toEqual([plainKey.id]);
      // The admin's own key with read_metrics but not manage_users: that key's (none) only.
      const metricsOnly = await createApiKey(server.url, { token: adminToken }, { name: 'metrics-only', permissions: ['read_metrics'] });
      const scoped = await usage({ group_by: 'key' }, { apiKey: metricsOnly.key });
      expect(scoped.data.every((r) => r.key_id === metricsOnly.id || r.requests === 0)).toBe(true);
      expectApiError(await call(server.url, 'GET', `/api/v1/usage?key_id=${infKey.id}`, { apiKey: metricsOnly.key }), 403, 'PERMISSION_DENIED');
      // With both (a key of the admin with manage_users too): everyone's.
      const both = await createApiKey(server.url, { token: adminToken }, { name: 'metrics-users', permissions: ['read_metrics', 'manage_users'] });
      const all = await usage({ group_by: 'key' }, { apiKey: both.key });
      expect(all.data.map((r) => r.key_id)).toEqual(expect.arrayContaining([infKey.id, plainKey.id]));
    });

    it('refuses bad filters with 400', async () => {
      for (const query of ['group_by=hour', 'group_by=key,,model', 'user_id=nope', 'since=yesterday', 'model=../etc']) {
        const res = await call(server.url, 'GET', `/api/v1/usage?${query}`, { token: adminToken });
        expectApiError(res, 400, 'VALIDATION_ERROR');
      }
    });

    it('survives a restart, including what was still batched at shutdown', async () => {
      const beforeRestart = await usage({ group_by: 'key,model' });
      // Answered just before the shutdown: written by the shutdown's flush, not by a timer or a query.
      const last = (await infer({ max_tokens: 4 }, openaiKey.key)).body.usage;
      expect(await server.store.queryUsage({ keyId: openaiKey.id, groupBy: [] })).toEqual([expect.objectContaining({ requests: 1 })]);
      server = await server.restart();
      adminToken = await login(server.url);
      const afterRestart = await usage({ group_by: 'key,model' });
      const row = (data: any[]) => data.find((r) => r.key_id === openaiKey.id);
      expect(row(afterRestart.data)).toMatchObject({
        requests: row(beforeRestart.data).requests + 1,
        prompt_tokens: row(beforeRestart.data).prompt_tokens + last.prompt_tokens,
        completion_tokens: row(beforeRestart.data).completion_tokens + last.completion_tokens,
      });
      expect(afterRestart.data.filter((r) => r.key_id !== openaiKey.id)).toEqual(beforeRestart.data.filter((r) => r.key_id !== openaiKey.id));
    });
  });
});

describe('bounded label cardinality', () => {
  let server: TestServer;
  let metricsKey: string;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 100_000 } });
    token = await login(server.url);
    metricsKey = (await createApiKey(server.url, { token }, { name: 'metrics', permissions: ['read_metrics', 'read_models'] })).key;
  });
  afterAll(async () => {
    await server?.close();
  });

  it('1,000 distinct paths, bad keys and rate-limited keys add no series', async () => {
    const baseline = await scrape(server.url, metricsKey);
    const marks: string[] = [];
    const run = async (n: number, task: (i: number) => Promise<unknown>) => {
      for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, j) => task(i + j)));
    };
    await run(1000, async (i) => {
      const mark = `zz${i}q${Math.random().toString(36).slice(2, 8)}`;
      marks.push(mark);
      await call(server.url, 'GET', `/api/v1/${mark}`, { apiKey: metricsKey });
      await call(server.url, 'GET', `/api/v1/models/${mark}`, { apiKey: metricsKey });
      await call(server.url, 'GET', `/${mark}`);
      await call(server.url, 'GET', '/api/v1/models', { apiKey: `inf_${mark.padEnd(40, '0')}` });
    });
    // 1,000 real keys with a budget of one request each, each refused on its second request.
    const adminId = (await server.store.getUserByUsername('admin'))!.id;
    const keys: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const generated = generateApiKey();
      await server.store.createApiKey({ userId: adminId, name: `k${i}`, prefix: generated.prefix, keyHash: generated.hash, permissions: ['read_models'], expiresAt: null, rateLimitPerMinute: 1 });
      keys.push(generated.key);
    }
    await run(1000, async (i) => {
      await call(server.url, 'GET', '/api/v1/models', { apiKey: keys[i] });
      expect((await call(server.url, 'GET', '/api/v1/models', { apiKey: keys[i] })).status).toBe(429);
    });

    const result = await scrape(server.url, metricsKey);
    expect(result.value('inferno_rate_limited_total', { principal: 'api_key' }) - baseline.value('inferno_rate_limited_total', { principal: 'api_key' })).toBe(1000);
    expect(result.value('inferno_authentication_failures_total', { kind: 'api_key' })).toBe(1000);
    expect(result.series('inferno_rate_limited_total')).toBeLessThanOrEqual(3);
    expect(result.series('inferno_authentication_failures_total')).toBeLessThanOrEqual(5);
    const routes = result.labelValues('inferno_http_requests_total', 'route');
    for (const route of ['/api/v1/models', '/api/v1/models/:id', '/metrics', 'unmatched']) expect(routes).toContain(route);
    // Besides those: the login and key creation of the setup.
    expect(routes.size).toBeLessThanOrEqual(6);
    expect(result.series('inferno_http_requests_total')).toBeLessThan(20);
    expect(result.series('inferno_http_request_duration_seconds')).toBeLessThan(10);
    expect(result.value('inferno_http_requests_total', { route: 'unmatched' })).toBe(2000);
    // No client-chosen string became a label value, and the exposition stayed small.
    const text = result.text;
    for (const mark of marks.slice(0, 50)) expect(text).not.toContain(mark);
    expect(text).not.toMatch(/inf_[0-9A-Za-z]{20,}/);
    expect(text.length).toBeLessThan(2 * baseline.text.length + 20_000);
  }, 120_000);

  it('login lockouts and failed logins are counted, without usernames', async () => {
    for (let i = 0; i < 5; i++) expectApiError(await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'lockme', password: `wrong-password-${i}` } }), 401, 'AUTHENTICATION_FAILED');
    expectApiError(await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'lockme', password: 'wrong-password-x' } }), 429, 'RATE_LIMITED');
    const result = await scrape(server.url, metricsKey);
    expect(result.value('inferno_authentication_failures_total', { kind: 'password' })).toBe(5);
    expect(result.value('inferno_login_lockouts_total')).toBe(1);
    expect(result.value('inferno_rate_limited_total')).toBe(1000); // the lockout is no rate-limit refusal
    expect(result.text).not.toContain('lockme');
  });

  it('a model that fails to load is counted under its name', async () => {
    writeFileSync(path.join(server.modelsDir, 'broken.gguf'), Buffer.concat([Buffer.from('GGUF'), Buffer.alloc(4096, 0x07)]));
    const res = await call(server.url, 'POST', '/api/v1/models/broken/load', { token });
    expect(res.status).toBeGreaterThanOrEqual(400);
    const result = await scrape(server.url, metricsKey);
    expect(result.value('inferno_model_load_failures_total', { model: 'broken' })).toBe(1);
    expect(result.count('inferno_model_load_seconds', { model: 'broken' })).toBe(0);
  });

  // Usage written so far, all users together (GET /api/v1/usage writes the batched usage first).
  const usageTotals = async () => {
    expect((await call(server.url, 'GET', '/api/v1/usage', { token })).status).toBe(200);
    const [row] = await server.store.queryUsage({ groupBy: [] });
    return { requests: row?.requests ?? 0, prompt: row?.promptTokens ?? 0, completion: row?.completionTokens ?? 0 };
  };

  it('a stream cut short by an unload is a stream failure, not a generation; the tokens it sent are usage', async () => {
    await waitForReady(server.url);
    const usageBefore = await usageTotals();
    const res = await fetch(`${server.url}/api/v1/inference`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: PROMPT, max_tokens: 4000, temperature: 0, stream: true }),
    });
    const events: string[] = [];
    for await (const e of sseData(res)) {
      events.push(e.event);
      if (events.length === 1) expect((await call(server.url, 'POST', `/api/v1/models/${MODEL}/unload`, { token })).status).toBe(200);
    }
    expect(events.at(-1)).toBe('error');
    const sent = events.filter((event) => event === 'token').length;
    expect(sent).toBeGreaterThan(0);
    const result = await scrape(server.url, metricsKey);
    expect(result.value('inferno_stream_failures_total', { model: MODEL, api: 'native' })).toBe(1);
    expect(result.value('inferno_inference_requests_total', { model: MODEL })).toBe(0);
    expect(result.value('inferno_generated_tokens_total', { model: MODEL, api: 'native' })).toBeGreaterThanOrEqual(sent);
    expect(result.value('inferno_prompt_tokens_total', { model: MODEL, api: 'native' })).toBeGreaterThan(0);
    const summary = (await call(server.url, 'GET', '/api/v1/metrics', { apiKey: metricsKey })).body;
    expect(summary.inference.stream_failures_total).toBe(1);
    // The stream sent those tokens: they are the caller's usage, as they would have been had it ended.
    const usageAfter = await usageTotals();
    expect(usageAfter.requests - usageBefore.requests).toBe(1);
    expect(usageAfter.completion - usageBefore.completion).toBe(result.value('inferno_generated_tokens_total', { model: MODEL, api: 'native' }));
    expect(usageAfter.prompt - usageBefore.prompt).toBeGreaterThan(0);
  });

  it('an OpenAI stream of two choices cut short by an unload: the client sees the error; both choices\' tokens are usage, the prompt once', async () => {
    await waitForReady(server.url);
    const usageBefore = await usageTotals();
    const before = await scrape(server.url, metricsKey);
    const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: token, maxRetries: 0 });
    // Greedy on a plain prompt: the demo model goes on to max_tokens (a sampled chat may end first).
    const stream = await openai.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 4000, temperature: 0, n: 2, stream: true });
    const chunks = [0, 0];
    let unloaded = false;
    const failure = await (async () => {
      for await (const chunk of stream) {
        for (const choice of chunk.choices) if (choice.text) chunks[choice.index]! += 1;
        if (!unloaded && chunks[0]! + chunks[1]! >= 4) {
          unloaded = true;
          expect((await call(server.url, 'POST', `/api/v1/models/${MODEL}/unload`, { token })).status).toBe(200);
        }
      }
    })().then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(OpenAI.APIError);
    expect(String((failure as Error).message)).toMatch(/unloaded/);
    expect(chunks[0]! + chunks[1]!).toBeGreaterThanOrEqual(4);
    const result = await scrape(server.url, metricsKey);
    const delta = (name: string) => result.value(name, { model: MODEL, api: 'openai' }) - before.value(name, { model: MODEL, api: 'openai' });
    expect(delta('inferno_stream_failures_total')).toBe(1);
    expect(delta('inferno_generated_tokens_total')).toBeGreaterThanOrEqual(chunks[0]! + chunks[1]!);
    const usageAfter = await usageTotals();
    expect(usageAfter.requests - usageBefore.requests).toBe(1);
    expect(usageAfter.completion - usageBefore.completion).toBe(delta('inferno_generated_tokens_total'));
    // The prompt counted once for its two choices (the engine read it twice).
    const prompt = usageAfter.prompt - usageBefore.prompt;
    expect(prompt).toBeGreaterThan(0);
    expect(delta('inferno_prompt_tokens_total')).toBeGreaterThanOrEqual(prompt);
  });

  it('model labels beyond the cap fold into "other"', () => {
    const budget = new LabelBudget(3);
    expect(['a', 'b', 'c', 'd', 'a', 'e'].map((m) => budget.label(m))).toEqual(['a', 'b', 'c', 'other', 'a', 'other']);
  });
});

describe('[metrics] public and enabled', () => {
  it('public opens /metrics without credentials; the JSON summary still needs read_metrics', async () => {
    const server = await startTestServer({ settings: { 'metrics.public': true } });
    try {
      const res = await call(server.url, 'GET', '/metrics');
      expect(res.status).toBe(200);
      expect(res.body).toContain('# TYPE inferno_http_requests_total counter');
      expectApiError(await call(server.url, 'GET', '/api/v1/metrics'), 401, 'AUTHENTICATION_FAILED');
    } finally {
      await server.close();
    }
  });

  it('[usage] flush_interval_seconds writes the batched usage on its own', async () => {
    const server = await startTestServer({ settings: { 'usage.flush_interval_seconds': 1 } });
    try {
      const token = await login(server.url);
      await waitForReady(server.url);
      const answer = await call(server.url, 'POST', '/api/v1/inference', { token, body: { model: MODEL, prompt: 'x', max_tokens: 3 } });
      expect(answer.status).toBe(200);
      // Read from the store directly (GET /api/v1/usage would flush first).
      await eventually(async () => expect((await server.store.queryUsage({ groupBy: [] }))[0]).toMatchObject({ requests: 1, completionTokens: answer.body.usage.completion_tokens }), 5_000);
    } finally {
      await server.close();
    }
  });

  it('enabled = false records nothing and serves no metrics (404); usage accounting goes on', async () => {
    const server = await startTestServer({ settings: { 'metrics.enabled': false } });
    try {
      const token = await login(server.url);
      expectApiError(await call(server.url, 'GET', '/metrics', { token }), 404, 'NOT_FOUND');
      expectApiError(await call(server.url, 'GET', '/api/v1/metrics', { token }), 404, 'NOT_FOUND');
      await waitForReady(server.url);
      const answer = await call(server.url, 'POST', '/api/v1/inference', { token, body: { model: MODEL, prompt: 'x', max_tokens: 3 } });
      expect(answer.status).toBe(200);
      const usage = await call(server.url, 'GET', '/api/v1/usage', { token });
      expect(usage.body.data[0]).toMatchObject({ requests: 1, prompt_tokens: answer.body.usage.prompt_tokens, completion_tokens: answer.body.usage.completion_tokens });
    } finally {
      await server.close();
    }
  });
});
