/**
 * Three replicas on three ports sharing one PostgreSQL database and one Redis, each its own
 * process started by the CLI, exercised over HTTP as a load balancer would spread requests.
 *
 * Needs PostgreSQL and Redis (the local services, or INFERNO_TEST_DATABASE_URL and
 * INFERNO_TEST_REDIS_URL). Without them this suite alone is skipped, and says so; under CI it
 * fails instead.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDemoModel } from '../server/src/engine/demo-model.js';
import { waitForReady } from './helpers/api-checks.js';
import { killGroup, spawnServer, tempRoot, type ChildServer } from './helpers/child-server.js';
import pg from 'pg';
import { freshSchema, mustRunSharedSuites, sharedServices, TEST_DATABASE_URL, TEST_REDIS_URL } from './helpers/shared-services.js';
import { ADMIN_PASSWORD, call, login } from './helpers/server.js';
import { readFile } from 'node:fs/promises';

const services = await sharedServices();
const run = services.available || mustRunSharedSuites;
if (!run) console.warn(`replicas: skipped, ${services.reason} (CI runs this suite and fails without them)`);

const PASSWORD = 'a-long-user-password-1';
const ITEM = { model: 'demo-tiny', prompt: 'Hello world', temperature: 0, max_tokens: 300 };
/** `[jobs] max_active_per_user` of the cluster. */
const JOB_CAP = 3;

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The replica's log lines (JSON), parsed. */
function logLines(replica: ChildServer): Record<string, unknown>[] {
  return replica
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe.skipIf(!run)('three replicas on one PostgreSQL and one Redis', () => {
  let root: string;
  let schema: Awaited<ReturnType<typeof freshSchema>>;
  let env: Record<string, string>;
  const replicas: ChildServer[] = [];
  const names = ['a', 'b', 'c'] as const;
  let admin: string;
  const url = (i: number) => replicas[i]!.url;
  /** The pg-boss job that dispatched a job (pg-boss lives in `<schema>_pgboss` beside the store). */
  const queueRow = async (id: string) => {
    const db = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await db.connect();
    try {
      const { rows } = await db.query<{ name: string; state: string; retry_count: number }>(`SELECT name, state, retry_count FROM ${schema.name}_pgboss.job WHERE id = $1`, [id]);
      return rows[0];
    } finally {
      await db.end();
    }
  };

  const startReplica = (name: string) =>
    spawnServer(root, {
      env: { ...env, INFERNO_REPLICA_ID: `replica-${name}` },
      group: true,
    });

  beforeAll(async () => {
    if (!services.available) throw new Error(`the replica suite needs PostgreSQL and Redis: ${services.reason}`);
    root = tempRoot();
    mkdirSync(path.join(root, 'models'), { recursive: true });
    schema = await freshSchema();
    env = {
      INFERNO_DATABASE_URL: schema.url,
      INFERNO_REDIS_URL: TEST_REDIS_URL,
      // Executions are counted from the log lines, also of a replica killed with SIGKILL: unbuffered.
      INFERNO_LOGGING_BUFFERED: 'false',
      INFERNO_STORAGE_REDIS_KEY_PREFIX: `inferno-test-${randomBytes(4).toString('hex')}`,
      // No JWT secret: the replicas share the one generated into the database.
      INFERNO_JWT_SECRET: '',
      INFERNO_ENGINE_PARALLEL: '2',
      INFERNO_RATE_LIMIT_REQUESTS_PER_MINUTE: '100000',
      INFERNO_LOGGING_LEVEL: 'info',
      INFERNO_JOBS_MAX_ACTIVE_PER_USER: String(JOB_CAP),
    };
    // Started together: one bootstraps the admin and migrates, the others wait or find it done.
    replicas.push(...(await Promise.all(names.map(startReplica))));
    for (let i = 0; i < 3; i++) {
      await waitForReady(url(i), 120_000);
    }
    admin = await login(url(0));
  }, 240_000);

  afterAll(async () => {
    for (const replica of replicas) killGroup(replica, 'SIGKILL');
    await Promise.all(replicas.map((r) => r.exited));
    await schema?.drop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('reports each dependency and its replica id in readiness', async () => {
    for (let i = 0; i < 3; i++) {
      const ready = await call(url(i), 'GET', '/health/ready');
      expect(ready.body).toEqual({
        ready: true,
        checks: { store: true, redis: true, engine: true },
        replica_id: `replica-${names[i]}`,
        backends: { store: 'postgres', limits: 'redis' },
      });
      expect(logLines(replicas[i]!).every((line) => line.replica === `replica-${names[i]}`)).toBe(true);
      const metrics = await fetch(`${url(i)}/metrics`, { headers: { Authorization: `Bearer ${admin}` } });
      expect(await metrics.text()).toContain(`inferno_replica_info{replica="replica-${names[i]}"} 1`);
    }
  });

  it('bootstraps the admin once, and a token from one replica works on the others', async () => {
    const users = await call(url(1), 'GET', '/api/v1/users', { token: admin });
    expect(users.status).toBe(200);
    expect(users.body.data.map((u: { username: string }) => u.username)).toEqual(['admin']);
    const boots = await call(url(2), 'GET', '/api/v1/audit-logs?action=user.create&limit=100', { token: admin });
    expect(boots.body.data.filter((e: { details: { bootstrap?: boolean } }) => e.details?.bootstrap)).toHaveLength(1);
    // Exactly one replica announced a created admin; the others found it there.
    expect(replicas.filter((r) => r.output().includes('created the first admin user'))).toHaveLength(1);
  });

  it('a key created on A works on B and C; revoked on B, it is refused on A at once', async () => {
    const created = await call(url(0), 'POST', '/api/v1/auth/api-keys', { token: admin, body: { name: 'shared', permissions: ['read_models'] } });
    expect(created.status).toBe(201);
    // Used on every replica first, so each holds it in memory (the credential cache).
    for (const i of [0, 1, 2]) expect((await call(url(i), 'GET', '/api/v1/models', { apiKey: created.body.key })).status).toBe(200);
    expect((await call(url(1), 'DELETE', `/api/v1/auth/api-keys/${created.body.id}`, { token: admin })).status).toBe(204);
    const refused = await call(url(0), 'GET', '/api/v1/models', { apiKey: created.body.key });
    expect(refused.status).toBe(401);
  });

  it('a logout on C and a disabled user on A end the sessions on every replica', async () => {
    const user = await call(url(0), 'POST', '/api/v1/users', { token: admin, body: { username: 'sessions', password: PASSWORD, role: 'user' } });
    expect(user.status).toBe(201);
    const first = await login(url(1), 'sessions', PASSWORD);
    const second = await login(url(2), 'sessions', PASSWORD);
    for (const token of [first, second]) expect((await call(url(0), 'GET', '/api/v1/auth/me', { token })).status).toBe(200);
    expect((await call(url(2), 'POST', '/api/v1/auth/logout', { token: first })).status).toBe(204);
    expect((await call(url(0), 'GET', '/api/v1/auth/me', { token: first })).status).toBe(401);
    expect((await call(url(0), 'GET', '/api/v1/auth/me', { token: second })).status).toBe(200);
    expect((await call(url(1), 'GET', '/api/v1/auth/me', { token: second })).status).toBe(200);
    expect((await call(url(0), 'PATCH', `/api/v1/users/${user.body.id}`, { token: admin, body: { disabled: true } })).status).toBe(200);
    expect((await call(url(1), 'GET', '/api/v1/auth/me', { token: second })).status).toBe(401);
  });

  it('a login lockout earned on A holds on C', async () => {
    expect((await call(url(0), 'POST', '/api/v1/users', { token: admin, body: { username: 'locked', password: PASSWORD, role: 'user' } })).status).toBe(201);
    for (let i = 0; i < 5; i++) {
      expect((await call(url(0), 'POST', '/api/v1/auth/login', { body: { username: 'locked', password: 'wrong-password' } })).status).toBe(401);
    }
    const onC = await call(url(2), 'POST', '/api/v1/auth/login', { body: { username: 'locked', password: PASSWORD } });
    expect(onC.status).toBe(429);
    expect(Number(onC.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('lists audit entries written by every replica from any of them', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await call(url(i), 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD } });
      expect(res.status).toBe(200);
      ids.push(res.headers.get('x-request-id')!);
    }
    for (let i = 0; i < 3; i++) {
      const listed = await call(url(i), 'GET', '/api/v1/audit-logs?action=auth.login&limit=200', { token: admin });
      const seen = new Set(listed.body.data.map((e: { request_id: string }) => e.request_id));
      expect(ids.every((id) => seen.has(id))).toBe(true);
    }
  });

  it('a model uploaded through B is listed on A and runs on C', async () => {
    const file = path.join(root, 'upload.gguf');
    await writeDemoModel(file, { preset: 'tiny', seed: 7 });
    const upload = await fetch(`${url(1)}/api/v1/models?id=shared-up`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${admin}`, 'Content-Type': 'application/octet-stream' },
      body: await readFile(file),
    });
    expect(upload.status).toBe(201);
    const listed = await call(url(0), 'GET', '/api/v1/models', { token: admin });
    expect(listed.body.data.map((m: { id: string }) => m.id)).toContain('shared-up');
    const ran = await call(url(2), 'POST', '/api/v1/inference', { token: admin, body: { model: 'shared-up', prompt: 'Hi', max_tokens: 4 } });
    expect(ran.status).toBe(200);
  }, 60_000);

  it('a job of 20 items runs each item exactly once, also when its replica is killed mid-job', async () => {
    const user = await call(url(0), 'POST', '/api/v1/users', { token: admin, body: { username: 'batch', password: PASSWORD, role: 'user' } });
    const token = await login(url(0), 'batch', PASSWORD);
    const submitted = await call(url(0), 'POST', '/api/v1/jobs', { token, body: { name: 'twenty', requests: Array.from({ length: 20 }, () => ITEM) } });
    expect(submitted.status).toBe(202);
    const jobId = submitted.body.id as string;
    const done = (r: ChildServer) => logLines(r).filter((l) => l.job_id === jobId && l.msg === 'job request done');
    // Whichever replica took it: wait for a few finished items there, then kill it without warning.
    const runner = await until('the job to be taken and 3 items done', async () => replicas.find((r) => done(r).length >= 3), 120_000, 20);
    const killedName = names[replicas.indexOf(runner)]!;
    killGroup(runner, 'SIGKILL');
    const killedAt = Date.now();
    await runner.exited;
    const survivors = replicas.filter((r) => r !== runner);
    const resumedBy = await until('another replica to resume the job', async () => survivors.find((r) => logLines(r).some((l) => l.job_id === jobId && l.msg === 'job started')), 60_000, 20).catch(
      (error: unknown) => {
        throw new Error(`${String(error)}\n${survivors.map((r) => r.output().split('\n').slice(-15).join('\n')).join('\n---\n')}`);
      },
    );
    const resumeMs = Date.now() - killedAt;
    console.log(`replicas: replica-${killedName} killed mid-job; ${names[replicas.indexOf(resumedBy)]} resumed it ${resumeMs} ms later`);
    const finished = await until(
      'the job to finish',
      async () => {
        const res = await call(survivors[0]!.url, 'GET', `/api/v1/jobs/${jobId}`, { token });
        return res.body.status === 'succeeded' || res.body.status === 'failed' ? res.body : undefined;
      },
      180_000,
      200,
    );
    expect(finished).toMatchObject({ status: 'succeeded', completed: 20, failed: 0 });
    // Count executions run to their end, on every replica, the killed one included.
    const executions = replicas.flatMap((r) => done(r).map((l) => l.index as number));
    const perItem = Array.from({ length: 20 }, (_, i) => executions.filter((x) => x === i).length);
    expect(perItem).toEqual(Array.from({ length: 20 }, () => 1));
    // pg-boss dispatched it: one pg-boss job under the same id, completed on a later attempt than the killed one.
    const queue = await queueRow(jobId);
    expect(queue).toMatchObject({ name: 'inferno-jobs', state: 'completed' });
    expect(queue!.retry_count).toBeGreaterThanOrEqual(1);
    // Results queryable from either survivor, identical.
    const other = await call(survivors[1]!.url, 'GET', `/api/v1/jobs/${jobId}`, { token });
    expect(other.body.results).toEqual(finished.results);
    expect(user.status).toBe(201);
    // The killed replica comes back (same id, same database), and finds nothing left to redo.
    const restarted = await startReplica(killedName);
    replicas[replicas.indexOf(runner)] = restarted;
    await waitForReady(restarted.url, 120_000);
  }, 400_000);

  it('a replica stopped with SIGTERM mid-job hands its job back at once; another finishes it, each item once', async () => {
    const token = await login(url(2), 'batch', PASSWORD);
    const submitted = await call(url(2), 'POST', '/api/v1/jobs', { token, body: { requests: Array.from({ length: 20 }, () => ITEM) } });
    const jobId = submitted.body.id as string;
    const done = (r: ChildServer) => logLines(r).filter((l) => l.job_id === jobId && l.msg === 'job request done');
    const runner = await until('the job to be taken and 2 items done', async () => replicas.find((r) => done(r).length >= 2), 120_000, 20);
    const stoppedName = names[replicas.indexOf(runner)]!;
    killGroup(runner, 'SIGTERM');
    const stoppedAt = Date.now();
    const survivors = replicas.filter((r) => r !== runner);
    await until('another replica to take the job', async () => survivors.find((r) => logLines(r).some((l) => l.job_id === jobId && l.msg === 'job started')), 60_000, 20);
    console.log(`replicas: replica-${stoppedName} stopped (SIGTERM) mid-job; taken elsewhere ${Date.now() - stoppedAt} ms later`);
    await runner.exited;
    // Handed back on the way out, not left to its heartbeat running out.
    expect(logLines(runner).some((l) => l.job_id === jobId && l.msg === 'job handed back to the queue: this replica is stopping')).toBe(true);
    const finished = await until('the job to finish', async () => {
      const res = await call(survivors[0]!.url, 'GET', `/api/v1/jobs/${jobId}`, { token });
      return res.body.status === 'succeeded' || res.body.status === 'failed' ? res.body : undefined;
    }, 180_000, 200);
    expect(finished).toMatchObject({ status: 'succeeded', completed: 20, failed: 0 });
    const executions = replicas.flatMap((r) => done(r).map((l) => l.index as number));
    expect(Array.from({ length: 20 }, (_, i) => executions.filter((x) => x === i).length)).toEqual(Array.from({ length: 20 }, () => 1));
    const restarted = await startReplica(stoppedName);
    replicas[replicas.indexOf(runner)] = restarted;
    await waitForReady(restarted.url, 120_000);
  }, 400_000);

  it('a job cancelled on one replica stops on the one running it', async () => {
    const token = await login(url(1), 'batch', PASSWORD);
    const submitted = await call(url(1), 'POST', '/api/v1/jobs', { token, body: { requests: Array.from({ length: 20 }, () => ({ ...ITEM, max_tokens: 2000 })) } });
    const jobId = submitted.body.id as string;
    const runner = await until('the job to start', async () => replicas.find((r) => logLines(r).some((l) => l.job_id === jobId && l.msg === 'job started')), 60_000, 20);
    const elsewhere = replicas.find((r) => r !== runner)!;
    const cancelled = await call(elsewhere.url, 'POST', `/api/v1/jobs/${jobId}/cancel`, { token });
    expect(cancelled.status).toBe(200);
    // The runner learns it at its next heartbeat (every [jobs] heartbeat_refresh_seconds, 1 s) and stops the running item.
    await until('the runner to stop', async () => (logLines(runner).some((l) => l.job_id === jobId && String(l.msg).startsWith('job stopped here')) ? true : undefined), 30_000, 100);
    const done = () => replicas.flatMap((r) => logLines(r).filter((l) => l.job_id === jobId && l.msg === 'job request done'));
    const doneAtStop = done().length;
    const job = await call(url(0), 'GET', `/api/v1/jobs/${jobId}`, { token });
    expect(job.body.status).toBe('cancelled');
    expect(job.body.completed).toBeLessThan(20);
    // The results: the finished ones first, then every other item cancelled (none queued or running).
    const statuses = (job.body.results as { status: string }[]).map((r) => r.status);
    const firstUnfinished = statuses.findIndex((status) => status !== 'succeeded');
    expect(firstUnfinished).toBe(job.body.completed);
    expect(statuses.slice(firstUnfinished)).toEqual(Array.from({ length: 20 - firstUnfinished }, () => 'cancelled'));
    // Nothing more runs anywhere once the runner stopped.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(done().length).toBe(doneAtStop);
  }, 120_000);

  it('one user\'s creates racing on all three replicas never exceed [jobs] max_active_per_user', async () => {
    expect((await call(url(0), 'POST', '/api/v1/users', { token: admin, body: { username: 'capped', password: PASSWORD, role: 'user' } })).status).toBe(201);
    const token = await login(url(2), 'capped', PASSWORD);
    // Long jobs: none ends while the creates race.
    const body = { requests: Array.from({ length: 20 }, () => ({ ...ITEM, max_tokens: 2000 })) };
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => call(url(i % 3), 'POST', '/api/v1/jobs', { token, body })));
    const accepted = answers.filter((a) => a.status === 202);
    const refused = answers.filter((a) => a.status === 429);
    expect(accepted).toHaveLength(JOB_CAP);
    expect(refused).toHaveLength(12 - JOB_CAP);
    for (const res of refused) {
      expect(res.body.error).toMatchObject({ code: 'RATE_LIMITED', details: { reason: 'max_active_jobs', limit: JOB_CAP } });
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    }
    // Every replica sees the same three, and a cancelled one frees a slot for the next create anywhere.
    const listed = await call(url(1), 'GET', '/api/v1/jobs?limit=100', { token });
    expect(listed.body.data.filter((j: { status: string }) => j.status === 'queued' || j.status === 'running')).toHaveLength(JOB_CAP);
    expect((await call(url(0), 'POST', `/api/v1/jobs/${accepted[0]!.body.id}/cancel`, { token })).status).toBe(200);
    const next = await call(url(2), 'POST', '/api/v1/jobs', { token, body });
    expect(next.status).toBe(202);
    for (const id of [...accepted.slice(1).map((a) => a.body.id as string), next.body.id as string]) {
      expect((await call(url(1), 'POST', `/api/v1/jobs/${id}/cancel`, { token })).status).toBe(200);
    }
  }, 60_000);

  it('a rate limit PATCHed on A applies on B within a second, and one user\'s budget holds across all three', async () => {
    const N = 9;
    expect((await call(url(0), 'POST', '/api/v1/users', { token: admin, body: { username: 'budget', password: PASSWORD, role: 'user' } })).status).toBe(201);
    const token = await login(url(2), 'budget', PASSWORD);
    const patched = await call(url(0), 'PATCH', '/api/v1/config', { token: admin, body: { rate_limit: { requests_per_minute: N } } });
    expect(patched.status).toBe(200);
    await new Promise((r) => setTimeout(r, 1000));
    const seen: { limit: string | null; remaining: string | null; reset: number }[] = [];
    for (let i = 0; i < N; i++) {
      const res = await call(url(i % 3), 'GET', '/api/v1/models', { token });
      expect(res.status).toBe(200);
      seen.push({ limit: res.headers.get('x-ratelimit-limit'), remaining: res.headers.get('x-ratelimit-remaining'), reset: Number(res.headers.get('x-ratelimit-reset')) });
    }
    // The first request (on B, as it happens: i = 1 is B... every replica) already counts N: the PATCH reached them all.
    expect(seen.map((s) => s.limit)).toEqual(Array.from({ length: N }, () => String(N)));
    expect(seen.map((s) => Number(s.remaining))).toEqual(Array.from({ length: N }, (_, i) => N - 1 - i));
    expect(Math.max(...seen.map((s) => s.reset)) - Math.min(...seen.map((s) => s.reset))).toBeLessThanOrEqual(1);
    for (let i = 0; i < 3; i++) {
      const refused = await call(url(i), 'GET', '/api/v1/models', { token });
      expect(refused.status).toBe(429);
      expect(refused.headers.get('x-ratelimit-remaining')).toBe('0');
      expect(refused.headers.get('x-ratelimit-limit')).toBe(String(N));
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    }
  }, 60_000);
});

describe.skipIf(!run)('two replicas, a job that uses up its attempts', () => {
  let root: string;
  let schema: Awaited<ReturnType<typeof freshSchema>>;
  const replicas: ChildServer[] = [];

  beforeAll(async () => {
    if (!services.available) throw new Error(`the replica suite needs PostgreSQL and Redis: ${services.reason}`);
    root = tempRoot();
    mkdirSync(path.join(root, 'models'), { recursive: true });
    schema = await freshSchema();
    const env = {
      INFERNO_DATABASE_URL: schema.url,
      INFERNO_REDIS_URL: TEST_REDIS_URL,
      INFERNO_LOGGING_BUFFERED: 'false',
      INFERNO_STORAGE_REDIS_KEY_PREFIX: `inferno-test-${randomBytes(4).toString('hex')}`,
      INFERNO_JWT_SECRET: '',
      INFERNO_RATE_LIMIT_REQUESTS_PER_MINUTE: '100000',
      INFERNO_LOGGING_LEVEL: 'info',
      // One attempt: the kill below ends it, and the job is given up rather than retried.
      INFERNO_JOBS_MAX_ATTEMPTS: '1',
    };
    replicas.push(...(await Promise.all(['x', 'y'].map((name) => spawnServer(root, { env: { ...env, INFERNO_REPLICA_ID: `replica-${name}` }, group: true })))));
    for (const replica of replicas) {
      await waitForReady(replica.url, 120_000);
    }
  }, 240_000);

  afterAll(async () => {
    for (const replica of replicas) killGroup(replica, 'SIGKILL');
    await Promise.all(replicas.map((r) => r.exited));
    await schema?.drop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('fails the job, keeping the items it finished, once the replica running its last attempt is killed', async () => {
    const token = await login(replicas[0]!.url);
    const submitted = await call(replicas[0]!.url, 'POST', '/api/v1/jobs', { token, body: { requests: Array.from({ length: 20 }, () => ({ ...ITEM, max_tokens: 2000 })) } });
    expect(submitted.status).toBe(202);
    const jobId = submitted.body.id as string;
    const done = (r: ChildServer) => logLines(r).filter((l) => l.job_id === jobId && l.msg === 'job request done');
    const runner = await until('the job to be taken and 2 items done', async () => replicas.find((r) => done(r).length >= 2), 120_000, 20);
    killGroup(runner, 'SIGKILL');
    await runner.exited;
    const survivor = replicas.find((r) => r !== runner)!;
    const ended = await until('the job to be given up', async () => {
      const res = await call(survivor.url, 'GET', `/api/v1/jobs/${jobId}`, { token });
      return res.body.status === 'failed' ? res.body : undefined;
    }, 60_000, 200);
    // What the killed replica finished is kept (a kill right after a save may leave its log line unwritten: at least those logged).
    const kept = ended.completed as number;
    expect(kept).toBeGreaterThanOrEqual(done(runner).length);
    expect(ended.failed).toBe(20 - kept);
    expect(ended.results.slice(0, kept).every((r: { status: string }) => r.status === 'succeeded')).toBe(true);
    expect(ended.results.slice(kept)).toEqual(
      Array.from({ length: 20 - kept }, (_, i) => ({ index: kept + i, status: 'failed', error: { code: 'INTERNAL_ERROR', message: 'The job was given up after 1 attempts', details: null } })),
    );
    // The survivor never ran any of it: the one attempt was the killed replica's.
    expect(done(survivor)).toHaveLength(0);
  }, 120_000);
});
