import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PostgresStore, StoreUnavailableError } from '../src/store/postgres-store.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import { JobLimitError, KeyLimitError, LastAdminError, UsernameTakenError, type Store } from '../src/store/types.js';
import { freshSchema, mustRunSharedSuites, sharedServices } from '../../test/helpers/shared-services.js';

/**
 * One suite for every store: what the server relies on, including what must hold under
 * concurrency (racing creates, racing demotions of the last admins, racing job claims, racing job creates under the cap).
 */
interface Backend {
  name: 'sqlite' | 'postgres';
  /** Opens a store on a fresh database; `again` opens a second one on the same database. */
  open(): Promise<{ store: Store; again(): Promise<Store>; cleanup(): Promise<void> }>;
}

const services = await sharedServices();
if (!services.available && !mustRunSharedSuites) {
  console.warn(`store conformance: the PostgreSQL store is not tested here (${services.reason}); CI runs it`);
}

const backends: Backend[] = [
  {
    name: 'sqlite',
    async open() {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-store-'));
      return { store: new SqliteStore(dir), again: async () => new SqliteStore(dir), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
    },
  },
  ...(services.available || mustRunSharedSuites
    ? [
        {
          name: 'postgres' as const,
          async open() {
            const schema = await freshSchema();
            return { store: await PostgresStore.open(schema.url, { poolSize: 8 }), again: () => PostgresStore.open(schema.url, { poolSize: 4 }), cleanup: schema.drop };
          },
        },
      ]
    : []),
];

const hash = (text: string) => createHash('sha256').update(text).digest('hex');
const settle = async <T>(work: Promise<T>[]) => {
  const results = await Promise.allSettled(work);
  return { ok: results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<T>).value), errors: results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as unknown) };
};

describe.each(backends)('store conformance: $name', (backend) => {
  let store: Store;
  let extra: Store[] = [];
  let opened: Awaited<ReturnType<Backend['open']>>;

  beforeEach(async () => {
    opened = await backend.open();
    store = opened.store;
    extra = [];
  });
  afterEach(async () => {
    for (const s of [store, ...extra]) await s.close();
    await opened.cleanup();
  });

  it('says what it is and answers a ping', async () => {
    expect(store.kind).toBe(backend.name);
    expect(await store.ping()).toBe(true);
  });

  it('opened twice at once on one database, migrates it once and both work', async () => {
    const [a, b] = await Promise.all([opened.again(), opened.again()]);
    extra.push(a, b);
    await a.createUser({ username: 'seen-by-both', passwordHash: 'h', role: 'user' });
    expect((await b.getUserByUsername('seen-by-both'))?.role).toBe('user');
    expect(await store.countUsers()).toBe(1);
  });

  describe('users', () => {
    it('creates, finds (username without regard to case), lists in creation order, updates and deletes', async () => {
      const alice = await store.createUser({ username: 'Alice', passwordHash: 'h1', role: 'user' });
      const bob = await store.createUser({ username: 'bob', passwordHash: 'h2', role: 'guest' });
      expect(alice).toMatchObject({ username: 'Alice', role: 'user', disabled: false, sessionVersion: 0 });
      expect((await store.getUserByUsername('alice'))?.id).toBe(alice.id);
      expect((await store.getUser(bob.id))?.username).toBe('bob');
      expect(await store.getUser('nope')).toBeUndefined();
      expect((await store.listUsers()).map((u) => u.username)).toEqual(['Alice', 'bob']);
      const updated = await store.updateUser(alice.id, { disabled: true, sessionVersion: 1, role: 'admin' });
      expect(updated).toMatchObject({ disabled: true, sessionVersion: 1, role: 'admin', passwordHash: 'h1' });
      expect(await store.updateUser('nope', { role: 'user' })).toBeUndefined();
      expect(await store.deleteUser(bob.id)).toBe(true);
      expect(await store.deleteUser(bob.id)).toBe(false);
      expect(await store.countUsers()).toBe(1);
    });

    it('refuses a taken username in any case, also when creates race', async () => {
      await store.createUser({ username: 'carol', passwordHash: 'h', role: 'user' });
      await expect(store.createUser({ username: 'CAROL', passwordHash: 'h', role: 'user' })).rejects.toBeInstanceOf(UsernameTakenError);
      const race = await settle(Array.from({ length: 6 }, () => store.createUser({ username: 'dave', passwordHash: 'h', role: 'user' })));
      expect(race.ok).toHaveLength(1);
      expect(race.errors.every((e) => e instanceof UsernameTakenError)).toBe(true);
    });

    it('keeps an enabled admin: the last one cannot be demoted, disabled or deleted, even by racing changes', async () => {
      const a = await store.createUser({ username: 'admin-a', passwordHash: 'h', role: 'admin' });
      const b = await store.createUser({ username: 'admin-b', passwordHash: 'h', role: 'admin' });
      const race = await settle([
        store.updateUser(a.id, { role: 'user' }, { keepEnabledAdmin: true }),
        store.updateUser(b.id, { disabled: true }, { keepEnabledAdmin: true }),
      ]);
      expect(race.ok).toHaveLength(1);
      expect(race.errors).toHaveLength(1);
      expect(race.errors[0]).toBeInstanceOf(LastAdminError);
      const admins = (await store.listUsers()).filter((u) => u.role === 'admin' && !u.disabled);
      expect(admins).toHaveLength(1);
      await expect(store.deleteUser(admins[0]!.id, { keepEnabledAdmin: true })).rejects.toBeInstanceOf(LastAdminError);
      expect(await store.getUser(admins[0]!.id)).toBeDefined();
      // Unguarded changes (the CLI's password reset) still go through.
      expect((await store.updateUser(admins[0]!.id, { passwordHash: 'new' }))?.passwordHash).toBe('new');
    });
  });

  describe('API keys', () => {
    const key = (userId: string, name: string, expiresAt: string | null = null) => ({
      userId,
      name,
      prefix: name.slice(0, 8).padEnd(8, '0'),
      keyHash: hash(name),
      permissions: ['read_models' as const],
      expiresAt,
      rateLimitPerMinute: null,
    });

    it('creates, finds by hash, lists active ones newest first, touches and revokes once', async () => {
      const user = await store.createUser({ username: 'keys', passwordHash: 'h', role: 'user' });
      const first = await store.createApiKey(key(user.id, 'first'));
      const second = await store.createApiKey({ ...key(user.id, 'second'), rateLimitPerMinute: 7 });
      expect(first).toMatchObject({ userId: user.id, permissions: ['read_models'], revokedAt: null, lastUsedAt: null, rateLimitPerMinute: null });
      expect(second.rateLimitPerMinute).toBe(7);
      expect((await store.findApiKeyByHash(hash('first')))?.id).toBe(first.id);
      expect(await store.findApiKeyByHash(hash('none'))).toBeUndefined();
      expect((await store.listApiKeys(user.id)).map((k) => k.name)).toEqual(['second', 'first']);
      const at = new Date().toISOString();
      await store.touchApiKey(first.id, at);
      expect((await store.getApiKey(first.id))?.lastUsedAt).toBe(at);
      expect(await store.revokeApiKey(first.id)).toBe(true);
      expect(await store.revokeApiKey(first.id)).toBe(false);
      expect((await store.getApiKey(first.id))?.revokedAt).not.toBeNull();
      expect((await store.listApiKeys(user.id)).map((k) => k.name)).toEqual(['second']);
    });

    it('holds the per-user cap of active keys when creates race (expired and revoked keys do not count)', async () => {
      const user = await store.createUser({ username: 'capped', passwordHash: 'h', role: 'user' });
      await store.createApiKey(key(user.id, 'expired', new Date(Date.now() - 1000).toISOString()), { maxActive: 3 });
      const revoked = await store.createApiKey(key(user.id, 'revoked'), { maxActive: 3 });
      await store.revokeApiKey(revoked.id);
      const race = await settle(Array.from({ length: 6 }, (_, i) => store.createApiKey(key(user.id, `race-${i}`), { maxActive: 3 })));
      expect(race.ok).toHaveLength(3);
      expect(race.errors).toHaveLength(3);
      expect(race.errors.every((e) => e instanceof KeyLimitError && e.active === 3)).toBe(true);
    });

    it('deletes a user\'s keys with the user', async () => {
      const user = await store.createUser({ username: 'gone', passwordHash: 'h', role: 'user' });
      const created = await store.createApiKey(key(user.id, 'gone-key'));
      await store.deleteUser(user.id);
      expect(await store.getApiKey(created.id)).toBeUndefined();
    });
  });

  it('remembers revoked token ids', async () => {
    await store.revokeToken('jti-1', Date.now() + 60_000);
    await store.revokeToken('jti-1', Date.now() + 60_000); // twice is fine
    expect(await store.isTokenRevoked('jti-1')).toBe(true);
    expect(await store.isTokenRevoked('jti-2')).toBe(false);
  });

  it('records audit events and lists them newest first, filtered and paged', async () => {
    await store.recordAudit({ action: 'auth.login', outcome: 'failure', ip: '10.0.0.1' });
    await store.recordAudit({ action: 'auth.login', outcome: 'success', actorUserId: 'u1', details: { note: 'x' } });
    await store.recordAudit({ action: 'config.update', outcome: 'success', actorUserId: 'u1', target: 'rate_limit.enabled' });
    const all = await store.listAudit();
    expect(all.map((e) => e.action)).toEqual(['config.update', 'auth.login', 'auth.login']);
    expect(all[1]).toMatchObject({ outcome: 'success', actorUserId: 'u1', actorKeyId: null, details: { note: 'x' } });
    expect((await store.listAudit({ action: 'auth.login' })).map((e) => e.outcome)).toEqual(['success', 'failure']);
    expect(await store.listAudit({ actor: 'u1' })).toHaveLength(2);
    expect((await store.listAudit({ beforeId: all[0]!.id, limit: 1 })).map((e) => e.id)).toEqual([all[1]!.id]);
    expect(await store.listAudit({ since: new Date(Date.now() + 60_000).toISOString() })).toHaveLength(0);
    expect(await store.listAudit({ until: new Date(Date.now() + 60_000).toISOString() })).toHaveLength(3);
  });

  it('persists settings and overwrites them', async () => {
    await store.putSettings({ 'rate_limit.requests_per_minute': 30, 'logging.level': 'debug' });
    await store.putSettings({ 'rate_limit.requests_per_minute': 45 });
    expect(await store.getSettings()).toEqual({ 'rate_limit.requests_per_minute': 45, 'logging.level': 'debug' });
  });

  it('keeps the first shared secret', async () => {
    expect(await store.getOrCreateSecret('jwt_secret', 'first')).toBe('first');
    expect(await store.getOrCreateSecret('jwt_secret', 'second')).toBe('first');
  });

  describe('idempotency keys', () => {
    const claim = (fingerprint: string, now = Date.now(), maxPerScope = 100) => ({ fingerprint, now, ttlMs: 60_000, maxPerScope });
    const response = { status: 201, headers: { 'content-type': 'application/json' }, body: '{"id":"x"}' };

    it('claims a key once, then answers the pending and the completed record; a released key is free again', async () => {
      expect(await store.claimIdempotencyKey('user:1', 'k1', claim('f1'))).toBeUndefined();
      expect(await store.claimIdempotencyKey('user:1', 'k1', claim('f1'))).toMatchObject({ state: 'pending', fingerprint: 'f1', response: undefined });
      expect(await store.claimIdempotencyKey('user:2', 'k1', claim('f9'))).toBeUndefined(); // scopes apart
      await store.completeIdempotencyKey('user:1', 'k1', response);
      expect(await store.claimIdempotencyKey('user:1', 'k1', claim('f2'))).toMatchObject({ state: 'complete', fingerprint: 'f1', response });
      await store.releaseIdempotencyKey('user:1', 'k1'); // complete: kept
      expect((await store.claimIdempotencyKey('user:1', 'k1', claim('f1')))?.state).toBe('complete');
      expect(await store.claimIdempotencyKey('user:1', 'k2', claim('f1'))).toBeUndefined();
      await store.releaseIdempotencyKey('user:1', 'k2');
      expect(await store.claimIdempotencyKey('user:1', 'k2', claim('f1'))).toBeUndefined();
    });

    it('gives a key to exactly one of many racing claims', async () => {
      const claims = await Promise.all(Array.from({ length: 8 }, () => store.claimIdempotencyKey('user:r', 'same', claim('f'))));
      expect(claims.filter((c) => c === undefined)).toHaveLength(1);
    });

    it('forgets expired keys, evicts the oldest completed keys beyond the cap, and sweeps', async () => {
      const t = Date.now();
      await store.claimIdempotencyKey('s', 'old', claim('f', t - 120_000));
      expect(await store.claimIdempotencyKey('s', 'old', claim('f', t))).toBeUndefined(); // expired: claimable
      await store.completeIdempotencyKey('s', 'old', response);
      await store.claimIdempotencyKey('s', 'pending', claim('f', t + 1));
      await store.claimIdempotencyKey('s', 'third', claim('f', t + 2, 2));
      // At the cap of 2: the completed key went, the pending one stayed.
      expect(await store.claimIdempotencyKey('s', 'old', claim('f', t + 3, 3))).toBeUndefined();
      expect((await store.claimIdempotencyKey('s', 'pending', claim('f', t + 4)))?.state).toBe('pending');
      expect(await store.sweepIdempotencyKeys(t + 10, t + 2)).toBe(1); // the pending one claimed before t+2
      expect(await store.sweepIdempotencyKeys(t + 120_000)).toBe(2);
    });
  });

  describe('usage', () => {
    const delta = (bucket: string, userId: string, keyId: string | null, model: string, requests = 1) => ({ bucket, userId, keyId, model, requests, promptTokens: 10 * requests, completionTokens: 5 * requests });

    it('adds deltas to hourly buckets and answers totals, grouped and filtered', async () => {
      await store.addUsage([delta('2026-12-01T09:00:00.000Z', 'u1', 'k1', 'm1'), delta('2026-12-01T09:00:00.000Z', 'u1', null, 'm1', 2)]);
      await store.addUsage([delta('2026-12-01T09:00:00.000Z', 'u1', 'k1', 'm1', 3), delta('2026-12-02T10:00:00.000Z', 'u2', 'k2', 'm2')]);
      await store.addUsage([]);
      expect(await store.queryUsage({ groupBy: [] })).toEqual([{ userId: null, keyId: null, model: null, day: null, requests: 7, promptTokens: 70, completionTokens: 35 }]);
      expect(await store.queryUsage({ groupBy: ['user', 'key'] })).toEqual([
        { userId: 'u1', keyId: null, model: null, day: null, requests: 2, promptTokens: 20, completionTokens: 10 },
        { userId: 'u1', keyId: 'k1', model: null, day: null, requests: 4, promptTokens: 40, completionTokens: 20 },
        { userId: 'u2', keyId: 'k2', model: null, day: null, requests: 1, promptTokens: 10, completionTokens: 5 },
      ]);
      expect((await store.queryUsage({ groupBy: ['day'] })).map((r) => [r.day, r.requests])).toEqual([['2026-12-01', 6], ['2026-12-02', 1]]);
      expect((await store.queryUsage({ groupBy: [], since: '2026-12-02T10:30:00Z' }))[0]!.requests).toBe(1); // counts from the hour's start
      expect((await store.queryUsage({ groupBy: [], until: '2026-12-02T10:00:00Z', model: 'm1' }))[0]!.requests).toBe(6);
      expect((await store.queryUsage({ groupBy: [], keyId: 'nope' }))[0]!.requests).toBe(0);
    });

    it('loses no increment when replicas add to one bucket at once', async () => {
      await Promise.all(Array.from({ length: 10 }, () => store.addUsage([delta('2026-12-01T09:00:00.000Z', 'u1', 'k1', 'm1')])));
      expect((await store.queryUsage({ groupBy: [] }))[0]!.requests).toBe(10);
    });
  });

  describe('jobs', () => {
    const requests = [{ model: 'm', prompt: 'a' }, { model: 'm', prompt: 'b' }];

    it('queues, claims in order, saves progress and finishes under the taking worker only', async () => {
      const user = await store.createUser({ username: 'jobs', passwordHash: 'h', role: 'user' });
      const one = await store.createJob({ userId: user.id, name: 'one', requests });
      const two = await store.createJob({ userId: user.id, name: null, requests });
      expect(one).toMatchObject({ status: 'queued', name: 'one', results: [{ index: 0, status: 'queued' }, { index: 1, status: 'queued' }], startedAt: null });
      expect(two.seq).toBeGreaterThan(one.seq);
      expect(await store.listUnfinishedJobIds()).toEqual([one.id, two.id]);
      const claimed = await store.claimNextJob('w1');
      expect(claimed).toMatchObject({ id: one.id, status: 'running' });
      expect(claimed!.startedAt).not.toBeNull();
      const progress = [{ index: 0, status: 'succeeded' as const }, { index: 1, status: 'running' as const }];
      expect(await store.saveJobResults(one.id, progress, 'w2')).toBe(false); // not its job
      expect(await store.saveJobResults(one.id, progress, 'w1')).toBe(true);
      expect(await store.finishJob(one.id, 'succeeded', [progress[0]!, { index: 1, status: 'succeeded' }], 'w2')).toBe(false);
      expect(await store.finishJob(one.id, 'succeeded', [progress[0]!, { index: 1, status: 'succeeded' }], 'w1')).toBe(true);
      expect(await store.saveJobResults(one.id, progress, 'w1')).toBe(false); // finished
      expect((await store.getJob(one.id))?.status).toBe('succeeded');
      expect((await store.listJobs({ userId: user.id })).map((j) => j.id)).toEqual([two.id, one.id]);
      expect((await store.listJobs({ beforeSeq: two.seq })).map((j) => j.id)).toEqual([one.id]);
      expect(await store.countJobsByStatus()).toEqual({ succeeded: 1, queued: 1 });
      expect(await store.listUnfinishedJobIds()).toEqual([two.id]);
    });

    it('gives each of many racing claims a different job', async () => {
      const user = await store.createUser({ username: 'racers', passwordHash: 'h', role: 'user' });
      const ids = new Set<string>();
      for (let i = 0; i < 8; i++) ids.add((await store.createJob({ userId: user.id, name: null, requests })).id);
      const claims = await Promise.all(Array.from({ length: 10 }, (_, i) => store.claimNextJob(`w${i}`)));
      const claimed = claims.filter((j) => j !== undefined).map((j) => j.id);
      expect(claimed).toHaveLength(8);
      expect(new Set(claimed)).toEqual(ids);
    });

    it('takes a given job over from the worker that had it, resuming at its first unfinished request; never an ended one', async () => {
      const user = await store.createUser({ username: 'takeover', passwordHash: 'h', role: 'user' });
      const job = await store.createJob({ userId: user.id, name: null, requests: [...requests, { model: 'm', prompt: 'c' }] });
      expect(await store.takeJob(job.id, 'died')).toMatchObject({ status: 'running' });
      await store.saveJobResults(job.id, [{ index: 0, status: 'succeeded' }, { index: 1, status: 'running' }, { index: 2, status: 'queued' }], 'died');
      const taken = await store.takeJob(job.id, 'heir');
      expect(taken).toMatchObject({ status: 'running', results: [{ index: 0, status: 'succeeded' }, { index: 1, status: 'queued' }, { index: 2, status: 'queued' }] });
      // The old holder is fenced out; the new one writes.
      expect(await store.saveJobResults(job.id, [], 'died')).toBe(false);
      expect(await store.finishJob(job.id, 'succeeded', [], 'died')).toBe(false);
      expect(await store.saveJobResults(job.id, taken!.results, 'heir')).toBe(true);
      await store.cancelJob(job.id);
      expect(await store.takeJob(job.id, 'late')).toBeUndefined();
      expect(await store.takeJob('00000000-0000-4000-8000-000000000000', 'late')).toBeUndefined();
    });

    it('cancels queued and running jobs once, keeping finished results', async () => {
      const user = await store.createUser({ username: 'cancel', passwordHash: 'h', role: 'user' });
      const job = await store.createJob({ userId: user.id, name: null, requests });
      await store.claimNextJob('w1');
      await store.saveJobResults(job.id, [{ index: 0, status: 'succeeded' }, { index: 1, status: 'running' }], 'w1');
      const outcome = await store.cancelJob(job.id);
      expect(outcome).toMatchObject({ cancelled: true, job: { status: 'cancelled', results: [{ index: 0, status: 'succeeded' }, { index: 1, status: 'cancelled' }] } });
      expect((await store.cancelJob(job.id))?.cancelled).toBe(false);
      expect(await store.cancelJob('nope')).toBeUndefined();
      expect(await store.saveJobResults(job.id, [], 'w1')).toBe(false);
    });

    it('re-queues running jobs: all, or one worker\'s, unfinished requests only', async () => {
      const user = await store.createUser({ username: 'requeue', passwordHash: 'h', role: 'user' });
      const first = await store.createJob({ userId: user.id, name: 'first', requests });
      const second = await store.createJob({ userId: user.id, name: 'second', requests });
      await store.claimNextJob('stopping');
      await store.claimNextJob('other');
      await store.saveJobResults(first.id, [{ index: 0, status: 'succeeded' }, { index: 1, status: 'running' }], 'stopping');
      expect(await store.requeueRunningJobs({ worker: 'stopping' })).toBe(1);
      expect(await store.getJob(first.id)).toMatchObject({ status: 'queued', results: [{ index: 0, status: 'succeeded' }, { index: 1, status: 'queued' }] });
      expect((await store.getJob(second.id))?.status).toBe('running');
      // The old holder can no longer write; the next claim resumes it.
      expect(await store.saveJobResults(first.id, [], 'stopping')).toBe(false);
      expect((await store.claimNextJob('heir'))?.id).toBe(first.id);
      expect(await store.requeueRunningJobs()).toBe(2);
    });

    it('caps a user\'s unfinished jobs, also when creates race; ended jobs and other users do not count', async () => {
      const user = await store.createUser({ username: 'busy', passwordHash: 'h', role: 'user' });
      const other = await store.createUser({ username: 'other', passwordHash: 'h', role: 'user' });
      const done = await store.createJob({ userId: user.id, name: 'done', requests }, { maxActive: 3 });
      await store.claimNextJob('w');
      await store.finishJob(done.id, 'succeeded', [], 'w');
      const cancelled = await store.createJob({ userId: user.id, name: 'cancelled', requests }, { maxActive: 3 });
      await store.cancelJob(cancelled.id);
      await store.createJob({ userId: user.id, name: 'running', requests }, { maxActive: 3 });
      await store.claimNextJob('w');
      // Racing through several connections (on PostgreSQL, as several replicas would).
      const racers = [store, await opened.again(), await opened.again()];
      extra.push(racers[1]!, racers[2]!);
      const race = await settle(Array.from({ length: 9 }, (_, i) => racers[i % 3]!.createJob({ userId: user.id, name: `race-${i}`, requests }, { maxActive: 3 })));
      expect(race.ok).toHaveLength(2);
      expect(race.errors).toHaveLength(7);
      expect(race.errors.every((e) => e instanceof JobLimitError && e.active === 3)).toBe(true);
      expect((await store.listJobs({ userId: user.id })).filter((j) => j.status === 'queued' || j.status === 'running')).toHaveLength(3);
      expect((await store.createJob({ userId: other.id, name: null, requests }, { maxActive: 3 })).status).toBe('queued');
      // 0 and absent: no cap.
      expect((await store.createJob({ userId: user.id, name: null, requests }, { maxActive: 0 })).status).toBe('queued');
      expect((await store.createJob({ userId: user.id, name: null, requests })).status).toBe('queued');
    });

    // Each store's own side of the dispatch hook (no skipped test on either).
    if (backend.name === 'postgres') it('dispatches in the creating transaction: a failed dispatch leaves no job', async () => {
      const user = await store.createUser({ username: 'dispatch', passwordHash: 'h', role: 'user' });
      const seen: string[] = [];
      const created = await store.createJob({ userId: user.id, name: 'sent', requests }, {
        dispatch: async (job, tx) => {
          // The row is visible inside the transaction the dispatch joins.
          const { rows } = await tx.executeSql('SELECT id FROM jobs WHERE id = $1', [job.id]);
          seen.push(String((rows[0] as { id: string }).id));
        },
      });
      expect(seen).toEqual([created.id]);
      const failed = await store.createJob({ userId: user.id, name: 'lost', requests }, { dispatch: async () => { throw new Error('queue down'); } }).catch((e: unknown) => e);
      expect((failed as Error).message).toBe('queue down');
      expect((await store.listJobs({ userId: user.id })).map((j) => j.name)).toEqual(['sent']);
    });

    else it('refuses a dispatch hook: SQLite runs jobs in process', async () => {
      const user = await store.createUser({ username: 'local', passwordHash: 'h', role: 'user' });
      await expect(store.createJob({ userId: user.id, name: null, requests }, { dispatch: async () => undefined })).rejects.toThrow(/in process/);
    });
  });
});

describe('PostgreSQL store start-up', () => {
  afterAll(() => undefined);

  it('fails with a clear message, without the password, when the database cannot be reached', async () => {
    const error = await PostgresStore.open('postgres://app:hunter2-secret@127.0.0.1:1/inferno').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    const message = (error as Error).message;
    expect(message).toContain('Cannot use the database at postgres://app:***@127.0.0.1:1/inferno');
    expect(message).toMatch(/ECONNREFUSED/);
    expect(message).not.toContain('hunter2-secret');
  });
});
