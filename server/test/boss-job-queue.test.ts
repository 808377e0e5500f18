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
