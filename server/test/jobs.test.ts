/**
 * Batch jobs (POST/GET /api/v1/jobs, cancel) on a real server and the real engine with demo-tiny:
 * results match direct inference, validation names each request, cancelling stops the running
 * generation, other users' jobs stay hidden, and queued or interrupted jobs survive a restart.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { GenerationResult } from '../src/engine/engine.js';
import { createApiKey, createUser, openDb, waitFor } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';
import { detailPaths, expectApiError, waitForReady } from '../../test/helpers/api-checks.js';

const MODEL = 'demo-tiny';
const PASSWORD = 'a-long-user-password-1';
// Greedy decoding of this prompt never samples the end-of-turn token: it runs to max_tokens.
const LONG = { model: MODEL, prompt: 'Hello world', temperature: 0, max_tokens: 2000 };
const SETTINGS = { 'rate_limit.requests_per_minute': 100_000, 'engine.parallel': 2 };

/** Polls a job until `done(job)` holds. */
async function waitJob(server: TestServer, token: string, id: string, done: (job: any) => boolean, timeoutMs = 15_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await call(server.url, 'GET', `/api/v1/jobs/${id}`, { token });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    if (done(res.body)) return res.body;
    if (Date.now() > deadline) throw new Error(`job ${id} never got there: ${JSON.stringify(res.body)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const isFinished = (job: any) => ['succeeded', 'failed', 'cancelled'].includes(job.status);

describe('jobs', () => {
  let server: TestServer;
  let admin: string;
  let alice: { id: string; token: string };
  let bob: { id: string; token: string };
  let guest: string;

  const submit = (body: unknown, token = alice.token) => call(server.url, 'POST', '/api/v1/jobs', { token, body });

  beforeAll(async () => {
    server = await startTestServer({ settings: SETTINGS });
    await waitForReady(server.url);
    admin = await login(server.url);
    const users = [];
    for (const [username, role] of [['alice', 'user'], ['bob', 'user'], ['guest1', 'guest']] as const) {
      users.push(await createUser(server.url, { token: admin }, { username, password: PASSWORD, role }));
    }
    alice = { id: users[0]!.id, token: await login(server.url, 'alice', PASSWORD) };
    bob = { id: users[1]!.id, token: await login(server.url, 'bob', PASSWORD) };
    guest = await login(server.url, 'guest1', PASSWORD);
  });
  afterAll(() => server?.close());

  it('a submitted job is 202 with Location, runs to succeeded, and matches direct inference with the same seeds', async () => {
    const requests = [
      { model: MODEL, prompt: 'Once upon a time', seed: 11, max_tokens: 24 },
      { model: MODEL, messages: [{ role: 'user', content: 'Hi there' }], seed: 3, max_tokens: 16 },
      { model: MODEL, prompt: 'Hello world', temperature: 0, max_tokens: 5, stop: ['\u0000never'] },
    ];
    const res = await submit({ requests, name: 'first batch' });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    expect(res.headers.get('location')).toBe(`/api/v1/jobs/${res.body.id}`);
    expect(res.body).toMatchObject({ status: 'queued', user_id: alice.id, name: 'first batch', total: 3, completed: 0, failed: 0, started_at: null, finished_at: null });
    expect(res.body.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.body.results).toEqual([0, 1, 2].map((index) => ({ index, status: 'queued' })));
    expect(Object.keys(res.body).sort()).toEqual(['completed', 'created_at', 'failed', 'finished_at', 'id', 'name', 'results', 'started_at', 'status', 'total', 'user_id']);

    const job = await waitJob(server, alice.token, res.body.id, isFinished);
    expect(job).toMatchObject({ status: 'succeeded', total: 3, completed: 3, failed: 0 });
    expect(Date.parse(job.started_at)).toBeGreaterThanOrEqual(Date.parse(job.created_at));
    expect(Date.parse(job.finished_at)).toBeGreaterThanOrEqual(Date.parse(job.started_at));

    for (const [index, request] of requests.entries()) {
      const result = job.results[index];
      expect(result.status).toBe('succeeded');
      expect(result.index).toBe(index);
      expect(result.response).toMatchObject({ object: 'inference', model: MODEL });
      expect(result.response.id).toMatch(/^inf_[0-9a-f]{32}$/);
      const direct = await call(server.url, 'POST', '/api/v1/inference', { token: alice.token, body: request });
      expect(direct.status).toBe(200);
      expect(result.response.text).toBe(direct.body.text);
      expect(result.response.usage).toEqual(direct.body.usage);
      expect(result.response.finish_reason).toBe(direct.body.finish_reason);
    }
    expect(job.results[2].response.usage.completion_tokens).toBe(5);

    const audit = await call(server.url, 'GET', '/api/v1/audit-logs?action=job.create', { token: admin });
    expect(audit.body.data.some((e: any) => e.target === job.id && e.actor_user_id === alice.id && e.outcome === 'success')).toBe(true);
  });

  it('validation errors name the request they are in: body.requests[i]...', async () => {
    const before = (await call(server.url, 'GET', '/api/v1/jobs?all=true&limit=100', { token: admin })).body.data.length;

    expectApiError(await submit({ requests: [] }), 400, 'VALIDATION_ERROR');
    expectApiError(await submit({}), 400, 'VALIDATION_ERROR');
    const tooMany = await submit({ requests: Array.from({ length: 101 }, () => ({ model: MODEL, prompt: 'x' })) });
    expectApiError(tooMany, 400, 'VALIDATION_ERROR');
    expect(detailPaths(tooMany)).toContain('body.requests');

    // Schema checks.
    const schema = await submit({
      requests: [
        { model: MODEL, prompt: 'fine' },
        { model: MODEL, prompt: 'x', max_tokens: 0 },
        { model: '../etc/passwd', prompt: 'x' },
      ],
      name: 'x'.repeat(129),
    });
    expectApiError(schema, 400, 'VALIDATION_ERROR');
    expect(detailPaths(schema).sort()).toEqual(['body.name', 'body.requests[1].max_tokens', 'body.requests[2].model']);
    const unknown = await submit({ requests: [{ model: MODEL, prompt: 'x' }, { model: MODEL, prompt: 'x', bogus: 1 }] });
    expectApiError(unknown, 400, 'VALIDATION_ERROR');
    expect(detailPaths(unknown)).toEqual(['body.requests[1].bogus']);

    // The checks POST /inference makes beyond the schema: the prompt limit, one of prompt and messages; and no streaming.
    const limit = server.config.limits.max_prompt_chars;
    const checks = await submit({
      requests: [
        { model: MODEL, prompt: 'fine' },
        { model: MODEL, prompt: 'a'.repeat(limit + 1) },
        { model: MODEL, messages: [{ role: 'user', content: 'b'.repeat(limit + 1) }] },
        { model: MODEL },
        { model: MODEL, prompt: 'x', stream: true },
      ],
    });
    expectApiError(checks, 400, 'VALIDATION_ERROR');
    expect(detailPaths(checks).sort()).toEqual(['body.requests[1].prompt', 'body.requests[2].messages', 'body.requests[3]', 'body.requests[4].stream']);

    const after = (await call(server.url, 'GET', '/api/v1/jobs?all=true&limit=100', { token: admin })).body.data.length;
    expect(after).toBe(before);
  });

  it('a request for an unknown model fails its own item (NOT_FOUND); the others still run', async () => {
    const res = await submit({
      requests: [
        { model: 'no-such-model', prompt: 'hi' },
        { model: MODEL, prompt: 'hi', seed: 1, max_tokens: 8 },
      ],
    });
    expect(res.status).toBe(202);
    const job = await waitJob(server, alice.token, res.body.id, isFinished);
    expect(job).toMatchObject({ status: 'failed', total: 2, completed: 1, failed: 1 });
    expect(job.results[0]).toMatchObject({ index: 0, status: 'failed', error: { code: 'NOT_FOUND', message: expect.any(String) } });
    expect(job.results[0].response).toBeUndefined();
    expect(job.results[1]).toMatchObject({ index: 1, status: 'succeeded', response: { model: MODEL } });
  });

  it('a job whose owner is disabled stops before its next request', async () => {
    const carol = await createUser(server.url, { token: admin }, { username: 'carol', password: PASSWORD, role: 'user' });
    const token = await login(server.url, 'carol', PASSWORD);
    const res = await submit({ requests: Array.from({ length: 3 }, () => LONG) }, token);
    expect(res.status).toBe(202);
    await waitJob(server, admin, res.body.id, (job) => job.results.some((r: any) => r.status === 'running'));
    const disabled = await call(server.url, 'PATCH', `/api/v1/users/${carol.id}`, { token: admin, body: { disabled: true } });
    expect(disabled.status).toBe(200);
    const job = await waitJob(server, admin, res.body.id, isFinished);
    expect(job.status).toBe('cancelled');
    expect(job.results.at(-1).status).toBe('cancelled');
  });

  it('cancelling a running job stops its generation at once; the remaining requests never run', async () => {
    const generate = vi.spyOn(server.engine, 'generate');
    try {
      const res = await submit({ requests: Array.from({ length: 5 }, () => LONG) });
      expect(res.status).toBe(202);
      const id = res.body.id;
      await waitJob(server, alice.token, id, (job) => job.status === 'running' && job.results.some((r: any) => r.status === 'running'));
      await waitFor(() => (server.engine.stats().find((s) => s.model === MODEL)?.busy === 1 ? true : undefined), 5_000, 'the generation to start');

      const cancelled = await call(server.url, 'POST', `/api/v1/jobs/${id}/cancel`, { token: alice.token });
      expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
      expect(cancelled.body.status).toBe('cancelled');
      expect(cancelled.body.finished_at).not.toBeNull();
      const statuses = cancelled.body.results.map((r: any) => r.status);
      expect(statuses.every((s: string) => s === 'succeeded' || s === 'cancelled')).toBe(true);
      expect(statuses.at(-1)).toBe('cancelled');

      // The generation in progress was aborted (finish reason cancelled), long before 2,000 tokens.
      await waitFor(() => (server.engine.stats().find((s) => s.model === MODEL)?.busy === 0 ? true : undefined), 2_000, 'the sequence to be freed');
      const last = generate.mock.results.at(-1)!;
      const outcome = (await last.value) as GenerationResult;
      expect(outcome.finishReason).toBe('cancelled');
      expect(outcome.usage.completion_tokens).toBeLessThan(2000);

      // Nothing more runs for this job.
      const calls = generate.mock.calls.length;
      expect(calls).toBe(statuses.filter((s: string) => s === 'succeeded').length + 1);
      await new Promise((r) => setTimeout(r, 300));
      expect(generate.mock.calls.length).toBe(calls);
      const later = await call(server.url, 'GET', `/api/v1/jobs/${id}`, { token: alice.token });
      expect(later.body.results).toEqual(cancelled.body.results);
      expect(later.body.status).toBe('cancelled');

      // Cancelling again: it has finished.
      expectApiError(await call(server.url, 'POST', `/api/v1/jobs/${id}/cancel`, { token: alice.token }), 409, 'CONFLICT');
      const audit = await call(server.url, 'GET', '/api/v1/audit-logs?action=job.cancel', { token: admin });
      expect(audit.body.data.some((e: any) => e.target === id && e.actor_user_id === alice.id)).toBe(true);
    } finally {
      generate.mockRestore();
    }
  });

  it('cancelling a queued job means none of its requests run; a finished job is 409 CONFLICT', async () => {
    const running = await submit({ requests: [LONG] });
    const queued = await submit({ requests: [{ model: MODEL, prompt: 'hi', seed: 1, max_tokens: 4 }] });
    const cancelled = await call(server.url, 'POST', `/api/v1/jobs/${queued.body.id}/cancel`, { token: alice.token });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ status: 'cancelled', started_at: null, results: [{ index: 0, status: 'cancelled' }] });
    expect((await call(server.url, 'POST', `/api/v1/jobs/${running.body.id}/cancel`, { token: alice.token })).status).toBe(200);

    const done = await submit({ requests: [{ model: MODEL, prompt: 'hi', seed: 2, max_tokens: 4 }] });
    await waitJob(server, alice.token, done.body.id, isFinished);
    const refused = await call(server.url, 'POST', `/api/v1/jobs/${done.body.id}/cancel`, { token: alice.token });
    expectApiError(refused, 409, 'CONFLICT');
    expect((await call(server.url, 'GET', `/api/v1/jobs/${done.body.id}`, { token: alice.token })).body.status).toBe('succeeded');
  });

  it("another user's job is 404 to see or cancel; an admin (manage_queue) sees and cancels any", async () => {
    const res = await submit({ requests: [LONG, LONG], name: 'alice only' });
    const id = res.body.id;
    try {
      expectApiError(await call(server.url, 'GET', `/api/v1/jobs/${id}`, { token: bob.token }), 404, 'NOT_FOUND');
      expectApiError(await call(server.url, 'POST', `/api/v1/jobs/${id}/cancel`, { token: bob.token }), 404, 'NOT_FOUND');
      // Exactly what an id that does not exist gets.
      expectApiError(await call(server.url, 'GET', '/api/v1/jobs/0d9c4f3e-3f5b-4a37-9e0b-6a2f1d1c2b3a', { token: bob.token }), 404, 'NOT_FOUND');
      expectApiError(await call(server.url, 'GET', '/api/v1/jobs/not-a-uuid', { token: bob.token }), 400, 'VALIDATION_ERROR');

      const bobs = await call(server.url, 'GET', '/api/v1/jobs', { token: bob.token });
      expect(bobs.status).toBe(200);
      expect(bobs.body.data).toEqual([]);
      expectApiError(await call(server.url, 'GET', '/api/v1/jobs?all=true', { token: bob.token }), 403, 'PERMISSION_DENIED');
      expectApiError(await call(server.url, 'GET', `/api/v1/jobs?user_id=${alice.id}`, { token: bob.token }), 403, 'PERMISSION_DENIED');
      expect((await call(server.url, 'GET', `/api/v1/jobs?user_id=${bob.id}`, { token: bob.token })).status).toBe(200);

      const seen = await call(server.url, 'GET', `/api/v1/jobs/${id}`, { token: admin });
      expect(seen.status).toBe(200);
      expect(seen.body).toMatchObject({ id, user_id: alice.id, name: 'alice only' });
      const all = await call(server.url, 'GET', '/api/v1/jobs?all=true', { token: admin });
      expect(all.body.data.some((j: any) => j.id === id)).toBe(true);
      const alices = await call(server.url, 'GET', `/api/v1/jobs?user_id=${alice.id}&limit=100`, { token: admin });
      expect(alices.body.data.length).toBeGreaterThan(1);
      expect(alices.body.data.every((j: any) => j.user_id === alice.id)).toBe(true);
      // Without ?all the admin sees their own jobs, like anyone.
      expect((await call(server.url, 'GET', '/api/v1/jobs', { token: admin })).body.data.every((j: any) => j.user_id !== alice.id)).toBe(true);

      const cancelled = await call(server.url, 'POST', `/api/v1/jobs/${id}/cancel`, { token: admin });
      expect(cancelled.status).toBe(200);
      expect(cancelled.body.status).toBe('cancelled');
    } finally {
      await call(server.url, 'POST', `/api/v1/jobs/${id}/cancel`, { token: admin });
    }
  });

  it('a guest (run_inference) may submit and follow jobs; a key without run_inference is 403', async () => {
    const res = await submit({ requests: [{ model: MODEL, prompt: 'hi', seed: 5, max_tokens: 4 }] }, guest);
    expect(res.status).toBe(202);
    const job = await waitJob(server, guest, res.body.id, isFinished);
    expect(job.status).toBe('succeeded');
    const own = await call(server.url, 'GET', '/api/v1/jobs', { token: guest });
    expect(own.body.data.map((j: any) => j.id)).toEqual([res.body.id]);
    expectApiError(await call(server.url, 'GET', '/api/v1/jobs?all=true', { token: guest }), 403, 'PERMISSION_DENIED');

    const readOnly = await createApiKey(server.url, { token: admin }, { name: 'read only', permissions: ['read_models'] });
    expectApiError(await call(server.url, 'POST', '/api/v1/jobs', { apiKey: readOnly.key, body: { requests: [{ model: MODEL, prompt: 'hi' }] } }), 403, 'PERMISSION_DENIED');
    expectApiError(await call(server.url, 'GET', '/api/v1/jobs', { apiKey: readOnly.key }), 403, 'PERMISSION_DENIED');
    expectApiError(await call(server.url, 'GET', `/api/v1/jobs/${res.body.id}`, { apiKey: readOnly.key }), 403, 'PERMISSION_DENIED');

    // manage_queue alone sees every job, but cannot submit.
    const queueOnly = await createApiKey(server.url, { token: admin }, { name: 'queue only', permissions: ['manage_queue'] });
    expect((await call(server.url, 'GET', `/api/v1/jobs/${res.body.id}`, { apiKey: queueOnly.key })).status).toBe(200);
    expect((await call(server.url, 'GET', '/api/v1/jobs?all=true', { apiKey: queueOnly.key })).status).toBe(200);
    expectApiError(await call(server.url, 'POST', '/api/v1/jobs', { apiKey: queueOnly.key, body: { requests: [{ model: MODEL, prompt: 'hi' }] } }), 403, 'PERMISSION_DENIED');
    expectApiError(await call(server.url, 'POST', '/api/v1/jobs', { body: { requests: [{ model: MODEL, prompt: 'hi' }] } }), 401, 'AUTHENTICATION_FAILED');
  });

  it('lists newest first, a page at a time', async () => {
    const first = await call(server.url, 'GET', '/api/v1/jobs?limit=2', { token: alice.token });
    expect(first.status).toBe(200);
    expect(first.body.data).toHaveLength(2);
    expect(first.body.next_cursor).toMatch(/^\d+$/);
    const created = first.body.data.map((j: any) => Date.parse(j.created_at));
    expect(created[0]).toBeGreaterThanOrEqual(created[1]);
    const second = await call(server.url, 'GET', `/api/v1/jobs?limit=2&cursor=${first.body.next_cursor}`, { token: alice.token });
    expect(second.body.data).toHaveLength(2);
    const ids = [...first.body.data, ...second.body.data].map((j: any) => j.id);
    expect(new Set(ids).size).toBe(4);
    const everything = await call(server.url, 'GET', '/api/v1/jobs?limit=100', { token: alice.token });
    expect(everything.body.data.slice(0, 4).map((j: any) => j.id)).toEqual(ids);
    expect(everything.body.next_cursor).toBeNull();
    expectApiError(await call(server.url, 'GET', '/api/v1/jobs?limit=0', { token: alice.token }), 400, 'VALIDATION_ERROR');
  });
});

describe('the per-user cap on unfinished jobs', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ settings: { ...SETTINGS, 'jobs.max_active_per_user': 2 } });
    await waitForReady(server.url);
  });
  afterAll(() => server?.close());

  it('refuses a job beyond [jobs] max_active_per_user with 429 RATE_LIMITED and Retry-After; an ended job frees its slot', async () => {
    const admin = await login(server.url);
    await createUser(server.url, { token: admin }, { username: 'capped', password: PASSWORD, role: 'user' });
    const token = await login(server.url, 'capped', PASSWORD);
    const submit = () => call(server.url, 'POST', '/api/v1/jobs', { token, body: { requests: [LONG, LONG] } });
    const first = await submit();
    const second = await submit();
    expect([first.status, second.status]).toEqual([202, 202]);
    const refused = await submit();
    const error = expectApiError(refused, 429, 'RATE_LIMITED');
    expect(error.message).toMatch(/2 unfinished jobs.*max_active_per_user is 2/);
    expect(error.details).toEqual({ reason: 'max_active_jobs', active: 2, limit: 2, retry_after_seconds: 5 });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    // Another user is not held by this one's jobs.
    expect((await call(server.url, 'POST', '/api/v1/jobs', { token: admin, body: { requests: [{ model: MODEL, prompt: 'hi', max_tokens: 2 }] } })).status).toBe(202);
    const denials = await call(server.url, 'GET', '/api/v1/audit-logs?action=job.create', { token: admin });
    expect(denials.body.data.filter((e: any) => e.outcome === 'denied')).toMatchObject([{ details: { reason: 'max_active_jobs', active: 2, limit: 2 } }]);
    expect((await call(server.url, 'POST', `/api/v1/jobs/${first.body.id}/cancel`, { token })).status).toBe(200);
    expect((await submit()).status).toBe(202);
    for (const job of (await call(server.url, 'GET', '/api/v1/jobs', { token })).body.data) {
      if (!isFinished(job)) await call(server.url, 'POST', `/api/v1/jobs/${job.id}/cancel`, { token });
    }
  });
});

describe('jobs across a restart', () => {
  let root: string;
  let server: TestServer | undefined;
  const dirs = () => ({ dataDir: path.join(root, 'data'), modelsDir: path.join(root, 'models') });

  beforeAll(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'inferno-jobs-'));
  });
  afterAll(async () => {
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('a queued job, the interrupted one, and one a crash left running all run after a restart', async () => {
    server = await startTestServer({ settings: SETTINGS, ...dirs() });
    await waitForReady(server.url);
    let token = await login(server.url);
    const short = { model: MODEL, prompt: 'Hello', seed: 9, max_tokens: 8 };
    const medium = { ...LONG, max_tokens: 600 }; // well under a second each

    const long = await call(server.url, 'POST', '/api/v1/jobs', { token, body: { requests: [medium, medium] } });
    const queued = await call(server.url, 'POST', '/api/v1/jobs', { token, body: { requests: [short] } });
    const crashed = await call(server.url, 'POST', '/api/v1/jobs', { token, body: { requests: [short, short] } });
    await waitJob(server, token, long.body.id, (job) => job.status === 'running');
    expect((await call(server.url, 'GET', `/api/v1/jobs/${queued.body.id}`, { token })).body.status).toBe('queued');
    await server.close(); // explicit dirs: nothing is removed

    // What a crash leaves behind: a job marked running, a request half done.
    const db = openDb(dirs().dataDir);
    try {
      const rows = db.prepare('SELECT id, status, results FROM jobs ORDER BY seq').all() as { id: string; status: string; results: string }[];
      // Stopping put the interrupted job back in the queue, its finished requests kept.
      expect(rows.map((r) => r.status)).toEqual(['queued', 'queued', 'queued']);
      expect(JSON.parse(rows[0]!.results).every((r: any) => r.status === 'queued' || r.status === 'succeeded')).toBe(true);
      const results = [{ index: 0, status: 'running' }, { index: 1, status: 'queued' }];
      db.prepare("UPDATE jobs SET status = 'running', started_at = ?, results = ? WHERE id = ?").run(new Date().toISOString(), JSON.stringify(results), crashed.body.id);
    } finally {
      db.close();
    }

    server = await startTestServer({ settings: SETTINGS, ...dirs() });
    token = await login(server.url);
    for (const id of [long.body.id, queued.body.id, crashed.body.id]) {
      const job = await waitJob(server, token, id, isFinished, 20_000);
      expect(job.status, JSON.stringify(job)).toBe('succeeded');
      expect(job.completed).toBe(job.total);
    }
    const again = await call(server.url, 'POST', '/api/v1/inference', { token, body: short });
    const queuedJob = (await call(server.url, 'GET', `/api/v1/jobs/${queued.body.id}`, { token })).body;
    expect(queuedJob.results[0].response.text).toBe(again.body.text);
  });
});
