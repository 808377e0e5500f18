/**
 * Credentials held in memory on a shared store: two PostgresStores on one schema stand for two
 * replicas, each wrapped in the credential cache as the server wraps it. What one replica (or an
 * operator by hand) changes is seen by the other on its very next lookup, while lookups between
 * changes are answered from memory. Real PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashApiKey } from '../src/auth/api-keys.js';
import { withCredentialCache } from '../src/store/credential-cache.js';
import { PostgresStore } from '../src/store/postgres-store.js';
import type { Store } from '../src/store/types.js';
import { freshSchema, mustRunSharedSuites, sharedServices, TEST_DATABASE_URL } from '../../test/helpers/shared-services.js';

const services = await sharedServices();
const run = services.available || mustRunSharedSuites;
if (!run) console.warn(`shared credentials: skipped, ${services.reason} (CI runs this suite and fails without them)`);

/** A replica's view: its store, cached as the server caches it, and how often the store itself was asked. */
function replica(store: PostgresStore) {
  const asked = { keys: 0, users: 0, tokens: 0 };
  const counted = new Proxy(store, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof value !== 'function') return value;
      const counter = ({ findApiKeyByHash: 'keys', getUser: 'users', isTokenRevoked: 'tokens' } as const)[property as string];
      return (...args: unknown[]) => {
        if (counter) asked[counter]++;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as unknown as Store;
  return { store: withCredentialCache(counted, { ttlMs: 60_000, sharedVersion: () => store.credentialsVersion() }), asked };
}

describe.skipIf(!run)('credentials cached on a shared store', () => {
  let schema: Awaited<ReturnType<typeof freshSchema>>;
  let rawA: PostgresStore;
  let rawB: PostgresStore;
  let a: ReturnType<typeof replica>;
  let b: ReturnType<typeof replica>;

  beforeAll(async () => {
    schema = await freshSchema();
    rawA = await PostgresStore.open(schema.url, { poolSize: 3 });
    rawB = await PostgresStore.open(schema.url, { poolSize: 3 });
    a = replica(rawA);
    b = replica(rawB);
  });

  afterAll(async () => {
    await rawA?.close();
    await rawB?.close();
    await schema?.drop();
  });

  const newUser = (name: string) => b.store.createUser({ username: `${name}-${randomUUID().slice(0, 8)}`, passwordHash: 'x', role: 'user' });
  const newKey = async (userId: string) => {
    const secret = `inf_${randomUUID().replaceAll('-', '')}`;
    const key = await b.store.createApiKey({ userId, name: 'k', prefix: secret.slice(0, 8), keyHash: hashApiKey(secret), permissions: ['read_models'], rateLimitPerMinute: null, expiresAt: null });
    return { id: key.id, hash: hashApiKey(secret) };
  };

  it('answers repeated lookups from memory, and sees a key revoked on the other replica on the next lookup, every time', async () => {
    const user = await newUser('revoked');
    const keys = await Promise.all(Array.from({ length: 20 }, () => newKey(user.id)));
    for (const key of keys) {
      // The first lookup misses; the second reads the count, which the last revocation moved, so
      // what was held is dropped and looked up again; from then on memory answers.
      for (let i = 0; i < 2; i++) expect((await a.store.findApiKeyByHash(key.hash))?.revokedAt).toBeNull();
      const asked = a.asked.keys;
      expect((await a.store.findApiKeyByHash(key.hash))?.revokedAt).toBeNull();
      expect(a.asked.keys).toBe(asked); // from memory
      expect(await b.store.revokeApiKey(key.id)).toBe(true);
      // No waiting: the revocation committed before this lookup began.
      expect((await a.store.findApiKeyByHash(key.hash))?.revokedAt).toEqual(expect.any(String));
    }
  });

  it("one request's key and user share one count read: a change committed between them may pass that request, never the next", async () => {
    const user = await newUser('together');
    const key = await newKey(user.id);
    const authenticate = () =>
      a.store.together!(async () => {
        const record = await a.store.findApiKeyByHash(key.hash);
        return a.store.getUser(record!.userId);
      });
    for (let i = 0; i < 2; i++) expect((await authenticate())?.disabled).toBe(false); // held, with the count seen
    const asked = { ...a.asked };
    expect((await authenticate())?.disabled).toBe(false);
    expect(a.asked).toEqual(asked); // from memory
    // Disabled on B after this request's key was found: this request may pass, the next may not.
    const during = await a.store.together!(async () => {
      const record = await a.store.findApiKeyByHash(key.hash);
      await b.store.updateUser(user.id, { disabled: true });
      return a.store.getUser(record!.userId);
    });
    expect(during?.id).toBe(user.id);
    expect((await authenticate())?.disabled).toBe(true);
  });

  it('sees a user disabled, a token revoked and a user deleted on the other replica at once', async () => {
    // Each is looked up twice first: held, with the count seen since the last change.
    const user = await newUser('changes');
    for (let i = 0; i < 2; i++) expect((await a.store.getUser(user.id))?.disabled).toBe(false);
    await b.store.updateUser(user.id, { disabled: true });
    expect((await a.store.getUser(user.id))?.disabled).toBe(true);

    const jti = randomUUID();
    for (let i = 0; i < 2; i++) expect(await a.store.isTokenRevoked(jti)).toBe(false);
    await b.store.revokeToken(jti, Date.now() + 60_000);
    expect(await a.store.isTokenRevoked(jti)).toBe(true);

    const key = await newKey(user.id);
    for (let i = 0; i < 2; i++) expect((await a.store.findApiKeyByHash(key.hash))?.id).toBe(key.id);
    await b.store.deleteUser(user.id);
    expect(await a.store.getUser(user.id)).toBeUndefined();
    expect(await a.store.findApiKeyByHash(key.hash)).toBeUndefined(); // gone with its user (a cascade)
  });

  it("does not count a key's last use as a change, and counts an operator's edit by hand from another search_path", async () => {
    const user = await newUser('touched');
    const key = await newKey(user.id);
    for (let i = 0; i < 2; i++) await a.store.findApiKeyByHash(key.hash); // held, with the count seen
    const version = await rawA.credentialsVersion();
    await b.store.touchApiKey(key.id, new Date().toISOString());
    expect(await rawA.credentialsVersion()).toBe(version);
    const asked = a.asked.keys;
    await a.store.findApiKeyByHash(key.hash);
    expect(a.asked.keys).toBe(asked);

    await a.store.getUser(user.id);
    const operator = new pg.Client({ connectionString: TEST_DATABASE_URL }); // search_path: the default, not the schema
    await operator.connect();
    try {
      await operator.query(`UPDATE ${schema.name}.users SET disabled = true WHERE id = $1`, [user.id]);
    } finally {
      await operator.end();
    }
    expect(await rawA.credentialsVersion()).toBeGreaterThan(version);
    expect((await a.store.getUser(user.id))?.disabled).toBe(true);
  });

  it("sees an operator's TRUNCATE and an edit made with triggers off for replication (session_replication_role = replica)", async () => {
    const user = await newUser('operator');
    const key = await newKey(user.id);
    for (let i = 0; i < 2; i++) {
      // Held, with the count seen since this user was made.
      expect((await a.store.findApiKeyByHash(key.hash))?.id).toBe(key.id);
      expect((await a.store.getUser(user.id))?.disabled).toBe(false);
    }
    const operator = new pg.Client({ connectionString: schema.url });
    await operator.connect();
    try {
      await operator.query('TRUNCATE api_keys');
      expect(await a.store.findApiKeyByHash(key.hash)).toBeUndefined();
      await operator.query('SET session_replication_role = replica');
      await operator.query('UPDATE users SET disabled = true WHERE id = $1', [user.id]);
    } finally {
      await operator.end();
    }
    expect((await a.store.getUser(user.id))?.disabled).toBe(true);
  });

  it('never deadlocks, as a count bumped at each statement would: two writers each holding a row the other wants', async () => {
    const user = await newUser('race');
    const key = await newKey(user.id);
    const [first, second] = [new pg.Client({ connectionString: schema.url }), new pg.Client({ connectionString: schema.url })];
    await Promise.all([first.connect(), second.connect()]);
    try {
      for (const client of [first, second]) await client.query("SET statement_timeout = '5s'"); // a wait that never ends fails fast
      await first.query('BEGIN');
      await second.query('BEGIN');
      await first.query('UPDATE users SET role = role WHERE id = $1', [user.id]);
      await second.query('UPDATE api_keys SET name = $1 WHERE id = $2', ['renamed', key.id]);
      // The first now waits for the second's key row; the second, committing, takes the count's row.
      const waiting = first.query('UPDATE api_keys SET name = $1 WHERE id = $2', ['again', key.id]);
      await second.query('COMMIT');
      await waiting;
      await first.query('COMMIT');
    } finally {
      await Promise.all([first.end(), second.end()]);
    }
    expect((await a.store.findApiKeyByHash(key.hash))?.name).toBe('again');
  });
});
