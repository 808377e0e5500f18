/**
 * The shared mode's job queue (pg-boss) in one process, on the real PostgreSQL and the real engine:
 * the races around a replica stopping that the replica suite cannot time over HTTP.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, type Config } from '../src/config.js';
import { writeDemoModel } from '../src/engine/demo-model.js';
import { InferenceEngine } from '../src/engine/engine.js';
import { ModelCatalog } from '../src/engine/model-catalog.js';
import { BossJobQueue } from '../src/jobs/boss-job-queue.js';
import { createLogger } from '../src/logging/logger.js';
import { PostgresStore } from '../src/store/postgres-store.js';
import { freshSchema, mustRunSharedSuites, sharedServices } from '../../test/helpers/shared-services.js';

const services = await sharedServices();
const run = services.available || mustRunSharedSuites;
if (!run) console.warn(`boss job queue: skipped, ${services.reason} (CI runs this suite and fails without them)`);

describe.skipIf(!run)('the shared job queue (pg-boss)', () => {
  const logger = createLogger('silent');
  let dir: string;
  let schema: Awaited<ReturnType<typeof freshSchema>>;
  let store: PostgresStore;
  let engine: InferenceEngine;
  let config: Config;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-boss-'));
    await writeDemoModel(path.join(dir, 'demo-tiny.gguf'), { preset: 'tiny' });
    config = structuredClone(DEFAULT_CONFIG) as Config;
    engine = new InferenceEngine(config, new ModelCatalog(dir), logger);
    await engine.start();
    schema = await freshSchema();
    store = await PostgresStore.open(schema.url, { poolSize: 4 });
  }, 60_000);

  afterAll(async () => {
    await engine?.close();
    await store?.close();
    await schema?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a job this replica takes while it is stopping goes back to the queue, none of its items run', async () => {
    const user = await store.createUser({ username: 'stopping', passwordHash: 'h', role: 'user' });
    let queue: BossJobQueue | undefined;
    let stopped: Promise<void> | undefined;
    // The stop lands while the worker is taking the job: after pg-boss handed it out, before it runs.
    const racing = new Proxy(store, {
      get(target, name) {
        if (name === 'takeJob') {
          return async (id: string, worker: string) => {
            const job = await target.takeJob(id, worker);
            stopped = queue!.stop();
            return job;
          };
        }
        const value = Reflect.get(target, name) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    queue = new BossJobQueue({ store: racing, engine, config, logger, worker: 'stopping-worker', replicaId: 'stopping', databaseUrl: schema.url });
    await queue.start();
    const item = { model: 'demo-tiny', prompt: 'Hello', temperature: 0, max_tokens: 8 };
    const job = await queue.submit({ userId: user.id, name: null, requests: [item, item, item] });
    const deadline = Date.now() + 30_000;
    while (!stopped && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(stopped).toBeDefined();
    await stopped;
    const after = await store.getJob(job.id);
    expect(after).toMatchObject({ status: 'queued' });
    expect(after!.results.map((r) => r.status)).toEqual(['queued', 'queued', 'queued']);
  }, 60_000);

  it('hand-backs at a stop spend no attempt: a job handed back more often than max_attempts still runs to the end', async () => {
    // A schema of its own: no other test's jobs in the queue.
    const own = await freshSchema();
    const store = await PostgresStore.open(own.url, { poolSize: 4 });
    const user = await store.createUser({ username: 'restarts', passwordHash: 'h', role: 'user' });
    const strict = { ...config, jobs: { ...config.jobs, max_attempts: 2 } };
    const item = { model: 'demo-tiny', prompt: 'Hello', temperature: 0, max_tokens: 4 };
    const inspect = new pg.Client({ connectionString: own.url });
    await inspect.connect();
    const dispatch = async (id: string) =>
      (await inspect.query(`SELECT state, retry_count, retry_limit FROM ${own.name}_pgboss.job WHERE id = $1 AND name = 'inferno-jobs'`, [id])).rows[0] as { state: string; retry_count: number; retry_limit: number };
    let jobId: string | undefined;
    try {
      // Three replicas in turn take the job and stop at once (a rolling restart, three times over).
      for (let restart = 0; restart < 3; restart++) {
        let queue: BossJobQueue | undefined;
        let stopped: Promise<void> | undefined;
        const stopsOnTake = new Proxy(store, {
          get(target, name) {
            if (name === 'takeJob') {
              return async (id: string, worker: string) => {
                const job = await target.takeJob(id, worker);
                stopped ??= queue!.stop();
                return job;
              };
            }
            const value = Reflect.get(target, name) as unknown;
            return typeof value === 'function' ? value.bind(target) : value;
          },
        });
        queue = new BossJobQueue({ store: stopsOnTake, engine, config: strict, logger, worker: `restart-${restart}`, replicaId: `restart-${restart}`, databaseUrl: own.url });
        await queue.start();
        jobId ??= (await queue.submit({ userId: user.id, name: null, requests: [item, item] })).id;
        const deadline = Date.now() + 30_000;
        while (!stopped && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        expect(stopped).toBeDefined();
        await stopped;
        expect(await store.getJob(jobId)).toMatchObject({ status: 'queued' });
        // Waiting for its retry with as many attempts left as when it was sent: pg-boss counts a claim
        // when it is made (retry_count + 1 at the next fetch), and each hand-back gave one back.
        expect(await dispatch(jobId)).toEqual({ state: 'retry', retry_count: restart, retry_limit: strict.jobs.max_attempts - 1 + restart + 1 });
      }
      const last = new BossJobQueue({ store, engine, config: strict, logger, worker: 'restart-last', replicaId: 'restart-last', databaseUrl: own.url });
      await last.start();
      try {
        const deadline = Date.now() + 30_000;
        while ((await store.getJob(jobId!))?.status !== 'succeeded' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        const done = await store.getJob(jobId!);
        expect(done).toMatchObject({ status: 'succeeded' });
        expect(done!.results.map((r) => r.status)).toEqual(['succeeded', 'succeeded']);
      } finally {
        await last.stop();
      }
    } finally {
      await inspect.end();
      await store.close();
      await own.drop();
    }
  }, 120_000);

  it('an unfinished job whose dispatch has ended is failed at the next start, not left holding a job slot', async () => {
    const user = await store.createUser({ username: 'orphaned', passwordHash: 'h', role: 'user' });
    // The first replica's dispatch completes without the job running (as if the store had lost it).
    let taken = false;
    const forgetful = new Proxy(store, {
      get(target, name) {
        if (name === 'takeJob') {
          return async () => {
            taken = true;
            return undefined;
          };
        }
        const value = Reflect.get(target, name) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const first = new BossJobQueue({ store: forgetful, engine, config, logger, worker: 'forgetful-worker', replicaId: 'forgetful', databaseUrl: schema.url });
    await first.start();
    const item = { model: 'demo-tiny', prompt: 'Hello', temperature: 0, max_tokens: 4 };
    const job = await first.submit({ userId: user.id, name: null, requests: [item, item] });
    const deadline = Date.now() + 30_000;
    while (!taken && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(taken).toBe(true);
    // pg-boss marks the dispatch completed just after the handler returned: wait until it has, before
    // this replica stops (a stop first would hand the dispatch back instead).
    const boss = new pg.Client({ connectionString: schema.url });
    await boss.connect();
    try {
      const state = async () => (await boss.query(`SELECT state FROM ${schema.name}_pgboss.job WHERE id = $1`, [job.id])).rows[0]?.state as string | undefined;
      const until = Date.now() + 30_000;
      while ((await state()) !== 'completed' && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      expect(await state()).toBe('completed');
    } finally {
      await boss.end();
    }
    await first.stop();
    expect(await store.getJob(job.id)).toMatchObject({ status: 'queued' });

    const second = new BossJobQueue({ store, engine, config, logger, worker: 'second-worker', replicaId: 'second', databaseUrl: schema.url });
    await second.start();
    try {
      const after = await store.getJob(job.id);
      expect(after).toMatchObject({ status: 'failed' });
      expect(after!.results.map((r) => r.status)).toEqual(['failed', 'failed']);
      expect(after!.results[0]!.error?.message).toMatch(/dispatch ended \(completed\)/);
    } finally {
      await second.stop();
    }
  }, 60_000);
});
