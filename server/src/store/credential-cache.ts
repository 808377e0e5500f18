import { AsyncLocalStorage } from 'node:async_hooks';
import type { ApiKeyRecord, Store, UserRecord } from './types.js';

export interface CredentialCacheOptions {
  /** How long an answer is used before the store is asked again (0: no cache). */
  ttlMs: number;
  /** Entries per kind (keys, users, token ids); the oldest go first beyond it. */
  maxEntries?: number;
  /** The clock (tests). */
  now?: () => number;
  /**
   * A number that changes when the data changes other than through this store (SQLite's
   * `data_version`): when it has moved, everything cached is dropped before the next answer.
   */
  externalVersion?: () => number;
  /**
   * The same for a store several processes share (PostgreSQL's `credentials_version`), asked
   * before every answer from memory: such an answer waits for a read sent after the lookup was
   * made, or after the first lookup of its request (`together`); one read is in flight at a time,
   * and the lookups that came during it share the next. So a change committed before a request
   * arrived is always seen. Where the read fails or takes longer than
   * `sharedVersionTimeoutMs`, the store answers, uncached.
   */
  sharedVersion?: () => Promise<number>;
  /** How long a `sharedVersion` read may take before the lookups waiting on it go to the store (default 1 s). */
  sharedVersionTimeoutMs?: number;
}

/**
 * The store with the three lookups every authenticated request makes — an API key by its hash,
 * its user, whether a JWT id is revoked — answered from memory for at most `ttlMs`, so that a
 * request does not make two or three database round trips before it does anything.
 *
 * Every write through this store that changes what those lookups answer drops the affected
 * entries at once: revoking a key, revoking a token (logout), changing a user (disable, role,
 * password, session version) and deleting one (with all of that user's keys). Revocation so
 * takes effect on the next request. Writes by another process (the `reset-password` CLI on a
 * running server's database, a hand edit) are seen through `externalVersion` (SQLite's
 * `data_version`, read once per event-loop turn) on the next request as well, and so are other
 * replicas' writes to a shared store through `sharedVersion` (one small query before an answer
 * from memory, shared by the lookups waiting together; a lookup that misses memory goes straight
 * to the store, which is fresh by itself). Without either, within `ttlMs`. Unknown key hashes are
 * never cached (guessing keys cannot fill memory), and neither are failed lookups.
 */
export function withCredentialCache<S extends Store>(store: S, options: CredentialCacheOptions): S {
  if (options.ttlMs <= 0) return store;
  const max = options.maxEntries ?? 10_000;
  const now = options.now ?? Date.now;
  const keys = new Bounded<Promise<ApiKeyRecord | undefined>>(max);
  const users = new Bounded<Promise<UserRecord | undefined>>(max);
  const revoked = new Bounded<Promise<boolean>>(max);
  /** A found key's hash by its id (a touch names the id). */
  const hashes = new Bounded<string>(max);
  const fresh = (at: number) => now() - at < options.ttlMs;
  let version = options.externalVersion?.();
  let versionRead = false;
  const clearAll = () => {
    keys.clear();
    users.clear();
    revoked.clear();
  };

  const { sharedVersion } = options;
  const timeoutMs = options.sharedVersionTimeoutMs ?? 1_000;
  const readShared = sharedVersion && latest(() => withTimeout(sharedVersion(), timeoutMs));
  let sharedSeen: number | undefined;
  /**
   * Whether memory may answer now: the shared count, read after this call, could be read (when it
   * moved, everything held was dropped first: what is held after that was looked up since).
   */
  const memoryMayAnswer = async (read: () => Promise<number>) => {
    try {
      const current = await read();
      if (current !== sharedSeen) {
        sharedSeen = current;
        clearAll();
      }
      return true;
    } catch {
      clearAll();
      return false;
    }
  };

  /**
   * One request's lookups (`together`): the first that memory could answer sends (or joins) a
   * count read, and the later ones take its answer. That read went out after the request arrived,
   * so it has seen every change committed before; what changed since is as new as the request.
   */
  const requests = new AsyncLocalStorage<{ check?: Promise<boolean>; over?: boolean }>();

  function remember<T>(cache: Bounded<Promise<T>>, id: string, lookup: () => Promise<T>, keepEmpty: boolean): Promise<T> {
    if (!readShared) return cached(cache, id, lookup, keepEmpty);
    // A miss is looked up now, after any change committed before this call: no read needed.
    const held = cache.get(id);
    if (!held || !fresh(held.at)) return cached(cache, id, lookup, keepEmpty);
    // What is held may predate a change: found again (or looked up) once the count says.
    // (Work begun inside a scope, a timer say, keeps it after `together` returns: not its check.)
    const request = requests.getStore();
    const check = request && !request.over ? (request.check ??= memoryMayAnswer(readShared)) : memoryMayAnswer(readShared);
    return check.then((may) => (may ? cached(cache, id, lookup, keepEmpty) : lookup()));
  }

  /** Caches a lookup's promise; a rejection (or `undefined` for keys) is not kept. */
  function cached<T>(cache: Bounded<Promise<T>>, id: string, lookup: () => Promise<T>, keepEmpty: boolean): Promise<T> {
    // Read once per turn of the event loop: a request's key and user lookups share one read, and
    // a request that arrives after another process's write is always in a later turn.
    if (options.externalVersion && !versionRead) {
      versionRead = true;
      setImmediate(() => (versionRead = false));
      const current = options.externalVersion();
      if (current !== version) {
        version = current;
        clearAll();
      }
    }
    const hit = cache.get(id);
    if (hit && fresh(hit.at)) return hit.value;
    const value = lookup();
    const entry = cache.set(id, value, now());
    value.then(
      (result) => {
        if (!keepEmpty && result === undefined) cache.deleteIf(id, entry);
      },
      () => cache.deleteIf(id, entry),
    );
    return value;
  }

  // Key entries are found by hash, and a revocation names the key's id: all of them are dropped
  // (revocations are rare; each cached key is looked up once more).
  const dropKeys = () => keys.clear();

  const overrides: Partial<Store> = {
    // Only a shared store's lookups have a count read to share (a scope per request costs a little).
    ...(readShared && {
      async together<T>(work: () => Promise<T>): Promise<T> {
        const request: { check?: Promise<boolean>; over?: boolean } = {};
        try {
          return await requests.run(request, work);
        } finally {
          request.over = true;
        }
      },
    }),
    findApiKeyByHash: (hash) =>
      remember(keys, hash, () => store.findApiKeyByHash(hash).then((record) => (record && hashes.set(record.id, hash, 0), record)), false),
    getUser: (id) => remember(users, id, () => store.getUser(id), true),
    isTokenRevoked: (jti) => remember(revoked, jti, () => store.isTokenRevoked(jti), true),
    async revokeApiKey(id) {
      dropKeys();
      try {
        return await store.revokeApiKey(id);
      } finally {
        dropKeys();
      }
    },
    async touchApiKey(id, at) {
      await store.touchApiKey(id, at);
      // The cached record learns the new time, so the next request does not write it again.
      const hash = hashes.get(id)?.value;
      void (hash !== undefined && keys.get(hash)?.value.then((record) => record?.id === id && (record.lastUsedAt = at), () => undefined));
    },
    async revokeToken(jti, expiresAtMs) {
      revoked.delete(jti);
      try {
        return await store.revokeToken(jti, expiresAtMs);
      } finally {
        revoked.delete(jti);
      }
    },
    async updateUser(id, changes, updateOptions) {
      users.delete(id);
      try {
        return await store.updateUser(id, changes, updateOptions);
      } finally {
        users.delete(id);
      }
    },
    async deleteUser(id, deleteOptions) {
      users.delete(id);
      try {
        return await store.deleteUser(id, deleteOptions);
      } finally {
        users.delete(id);
        dropKeys();
      }
    },
  };
  return new Proxy(store, {
    get(target, property, receiver) {
      if (typeof property === 'string' && Object.hasOwn(overrides, property)) return overrides[property as keyof Store];
      const value = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/**
 * `read`, shared so that every caller gets the answer of a read sent after its call: at most one
 * read in flight; the callers that come while it is out share the one sent when it is back.
 */
function latest<T>(read: () => Promise<T>): () => Promise<T> {
  let inFlight: Promise<T> | undefined;
  let next: Promise<T> | undefined;
  const send = () => {
    const sent = read();
    inFlight = sent;
    const settled = () => {
      if (inFlight === sent) inFlight = undefined;
    };
    sent.then(settled, settled);
    return sent;
  };
  return () => {
    // Between a read's end and the next one's sending, `next` is still to be sent: joined too.
    if (next) return next;
    if (!inFlight) return send();
    next = inFlight.then(
      () => undefined,
      () => undefined,
    ).then(() => {
      next = undefined;
      return send();
    });
    return next;
  };
}

/** `promise`, or a rejection once `ms` have passed without it settling. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** A map that keeps at most `max` entries, dropping the oldest inserted. */
class Bounded<V> {
  readonly #map = new Map<string, { value: V; at: number }>();
  constructor(readonly max: number) {}
  get(id: string) {
    return this.#map.get(id);
  }
  set(id: string, value: V, at: number) {
    const entry = { value, at };
    this.#map.delete(id);
    this.#map.set(id, entry);
    if (this.#map.size > this.max) this.#map.delete(this.#map.keys().next().value!);
    return entry;
  }
  delete(id: string) {
    this.#map.delete(id);
  }
  /** Deletes `id` only if it still holds `entry` (a newer lookup may have replaced it). */
  deleteIf(id: string, entry: { value: V; at: number }) {
    if (this.#map.get(id) === entry) this.#map.delete(id);
  }
  clear() {
    this.#map.clear();
  }
}
