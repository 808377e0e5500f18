import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { redactUrl } from '../config.js';
import { POSTGRES_MIGRATIONS } from './postgres-migrations.js';
import { MIGRATIONS } from './migrations.js';
import { hourOf, isUnfinished, now, toApiKey, toAudit, toIdempotency, toJob, toUser, type Row } from './rows.js';
import { JobLimitError, KeyLimitError, LastAdminError, UsernameTakenError } from './types.js';
import type {
  ApiKeyRecord,
  AuditEvent,
  AuditFilter,
  AuditRecord,
  CreateJobOptions,
  IdempotencyRecord,
  JobFilter,
  JobStatus,
  JobRecord,
  JobResult,
  Role,
  Store,
  StoredResponse,
  UsageDelta,
  UsageDimension,
  UsageQuery,
  UsageTotals,
  UserRecord,
} from './types.js';

type Queryable = Pick<pg.PoolClient, 'query'>;

/** The database could not be reached or refused us: a start-up error with no stack and no password. */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
}

/**
 * The shared store: PostgreSQL through a `pg` pool, for several replicas behind a load balancer.
 * Where SQLite relied on its single writer, this takes row locks or transaction-scoped advisory
 * locks (the last-admin check, the key and job caps, job claims with `FOR UPDATE SKIP LOCKED`).
 */
export class PostgresStore implements Store {
  readonly kind = 'postgres';
  readonly #pool: pg.Pool;

  private constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /** Connects, checks the server answers, and migrates (one replica at a time, under an advisory lock). */
  static async open(url: string, options: { poolSize?: number } = {}): Promise<PostgresStore> {
    // TCP keep-alive: a connection whose server went away without a word is found out, not waited on.
    const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 10, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 30_000, keepAlive: true });
    // An idle client's error (the server restarted) must not crash the process; the pool replaces it.
    pool.on('error', () => undefined);
    const store = new PostgresStore(pool);
    try {
      await store.#migrate();
    } catch (error) {
      await pool.end().catch(() => undefined);
      if (error instanceof StoreUnavailableError) throw error;
      const reason = (error as { code?: string }).code ?? '';
      const message = error instanceof Error ? error.message : String(error);
      throw new StoreUnavailableError(`Cannot use the database at ${redactUrl(url)}: ${message}${reason && !message.includes(reason) ? ` (${reason})` : ''}`);
    }
    return store;
  }

  async #migrate(): Promise<void> {
    if (POSTGRES_MIGRATIONS.length !== MIGRATIONS.length) throw new Error('store: the PostgreSQL and SQLite migration lists differ in length');
    await this.#transaction(async (client) => {
      // Replicas starting together: the first migrates, the others wait here, then find nothing to do.
      await client.query("SELECT pg_advisory_xact_lock(hashtext('inferno.migrate:' || current_schema()))");
      await client.query('CREATE TABLE IF NOT EXISTS inferno_schema (version INTEGER NOT NULL)');
      const { rows } = await client.query<{ version: number }>('SELECT version FROM inferno_schema');
      if (rows.length === 0) await client.query('INSERT INTO inferno_schema (version) VALUES (0)');
      const version = rows[0]?.version ?? 0;
      if (version > POSTGRES_MIGRATIONS.length) {
        throw new StoreUnavailableError(`The database schema (version ${version}) is newer than this server (${POSTGRES_MIGRATIONS.length}); upgrade the server.`);
      }
      for (let v = version; v < POSTGRES_MIGRATIONS.length; v++) await client.query(POSTGRES_MIGRATIONS[v]!);
      await client.query('UPDATE inferno_schema SET version = $1', [POSTGRES_MIGRATIONS.length]);
    });
  }

  async ping(): Promise<boolean> {
    try {
      await this.#pool.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }

  /**
   * A count that moves, in the same commit, with every change to users, API keys (other than their
   * last use) and revoked tokens, by any replica or by hand (the triggers of migration 11): where it
   * has not moved, credentials read earlier still hold.
   */
  async credentialsVersion(): Promise<number> {
    // Not a named (prepared) statement, though that measured 13% more requests/s on the shared
    // listing: behind PgBouncer in transaction mode a name prepared on one server connection is
    // unknown on the next.
    return Number((await this.#one('SELECT version FROM credentials_version WHERE id = 1'))!.version);
  }

  async close(): Promise<void> {
    if (!this.#pool.ended) await this.#pool.end();
  }

  async #one(sql: string, values: unknown[] = [], on: Queryable = this.#pool): Promise<Row | undefined> {
    return (await on.query<Row>(sql, values)).rows[0];
  }

  async #all(sql: string, values: unknown[] = [], on: Queryable = this.#pool): Promise<Row[]> {
    return (await on.query<Row>(sql, values)).rows;
  }

  async #changed(sql: string, values: unknown[] = []): Promise<boolean> {
    return ((await this.#pool.query(sql, values)).rowCount ?? 0) > 0;
  }

  async #transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  // Users

  async countUsers(): Promise<number> {
    return Number((await this.#one('SELECT COUNT(*) AS n FROM users'))!.n);
  }

  async createUser(user: { username: string; passwordHash: string; role: Role }): Promise<UserRecord> {
    const at = now();
    try {
      const row = await this.#one(
        `INSERT INTO users (id, username, password_hash, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`,
        [randomUUID(), user.username, user.passwordHash, user.role, at, at],
      );
      return toUser(row!);
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw new UsernameTakenError();
      throw error;
    }
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const row = await this.#one('SELECT * FROM users WHERE id = $1', [id]);
    return row && toUser(row);
  }

  async getUserByUsername(username: string): Promise<UserRecord | undefined> {
    const row = await this.#one('SELECT * FROM users WHERE lower(username) = lower($1)', [username]);
    return row && toUser(row);
  }

  async listUsers(): Promise<UserRecord[]> {
    return (await this.#all('SELECT * FROM users ORDER BY created_at, seq')).map(toUser);
  }

  async updateUser(
    id: string,
    changes: Partial<Pick<UserRecord, 'passwordHash' | 'role' | 'disabled' | 'sessionVersion'>>,
    options: { keepEnabledAdmin?: boolean } = {},
  ): Promise<UserRecord | undefined> {
    const columns: Record<string, unknown> = {
      password_hash: changes.passwordHash,
      role: changes.role,
      disabled: changes.disabled,
      session_version: changes.sessionVersion,
    };
    const set = Object.entries(columns).filter(([, value]) => value !== undefined);
    const assignments = [...set.map(([column], i) => `${column} = $${i + 1}`), `updated_at = $${set.length + 1}`].join(', ');
    const values = [...set.map(([, value]) => value), now(), id];
    const sql = `UPDATE users SET ${assignments} WHERE id = $${set.length + 2} RETURNING *`;
    return this.#adminGuarded(options.keepEnabledAdmin, async (client) => {
      const row = await this.#one(sql, values, client);
      return row && toUser(row);
    });
  }

  async deleteUser(id: string, options: { keepEnabledAdmin?: boolean } = {}): Promise<boolean> {
    return this.#adminGuarded(options.keepEnabledAdmin, async (client) => ((await client.query('DELETE FROM users WHERE id = $1', [id])).rowCount ?? 0) > 0);
  }

  /**
   * Runs a user change in a transaction; guarded, the changes that could remove an admin queue up
   * behind one advisory lock and the change is rolled back when no enabled admin is left.
   */
  async #adminGuarded<T>(guard: boolean | undefined, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.#transaction(async (client) => {
      if (guard) await client.query("SELECT pg_advisory_xact_lock(hashtext('inferno.admins:' || current_schema()))");
      const result = await work(client);
      if (guard) {
        const row = await this.#one("SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND NOT disabled", [], client);
        if (Number(row!.n) === 0) throw new LastAdminError();
      }
      return result;
    });
  }

  // API keys

  async createApiKey(key: Omit<ApiKeyRecord, 'id' | 'createdAt' | 'lastUsedAt' | 'revokedAt'>, options: { maxActive?: number } = {}): Promise<ApiKeyRecord> {
    return this.#transaction(async (client) => {
      if (options.maxActive !== undefined) {
        // The user's row lock serialises key creation per user: two racing creates count one after the other.
        await client.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [key.userId]);
        const row = await this.#one(
          'SELECT COUNT(*) AS n FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)',
          [key.userId, now()],
          client,
        );
        if (Number(row!.n) >= options.maxActive) throw new KeyLimitError(Number(row!.n));
      }
      const row = await this.#one(
        `INSERT INTO api_keys (id, user_id, name, prefix, key_hash, permissions, created_at, expires_at, rate_limit_per_minute)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *`,
        [randomUUID(), key.userId, key.name, key.prefix, key.keyHash, JSON.stringify(key.permissions), now(), key.expiresAt, key.rateLimitPerMinute],
        client,
      );
      return toApiKey(row!);
    });
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | undefined> {
    const row = await this.#one('SELECT * FROM api_keys WHERE id = $1', [id]);
    return row && toApiKey(row);
  }

  async findApiKeyByHash(keyHash: string): Promise<ApiKeyRecord | undefined> {
    const row = await this.#one('SELECT * FROM api_keys WHERE key_hash = $1', [keyHash]);
    return row && toApiKey(row);
  }

  async listApiKeys(userId: string): Promise<ApiKeyRecord[]> {
    return (await this.#all('SELECT * FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, seq DESC', [userId])).map(toApiKey);
  }

  async revokeApiKey(id: string): Promise<boolean> {
    return this.#changed('UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [now(), id]);
  }

  async touchApiKey(id: string, at: string): Promise<void> {
    await this.#pool.query('UPDATE api_keys SET last_used_at = $1 WHERE id = $2', [at, id]);
  }

  // Revoked tokens

  async revokeToken(jti: string, expiresAtMs: number): Promise<void> {
    await this.#pool.query('DELETE FROM revoked_tokens WHERE expires_at < $1', [Date.now()]);
    await this.#pool.query('INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING', [jti, expiresAtMs]);
  }

  async isTokenRevoked(jti: string): Promise<boolean> {
    return (await this.#one('SELECT 1 FROM revoked_tokens WHERE jti = $1', [jti])) !== undefined;
  }

  // Audit log

  async recordAudit(event: AuditEvent): Promise<void> {
    await this.#pool.query(
      `INSERT INTO audit_log (time, action, outcome, actor_user_id, actor_key_id, target, ip, request_id, details)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [
        now(),
        event.action,
        event.outcome,
        event.actorUserId ?? null,
        event.actorKeyId ?? null,
        event.target ?? null,
        event.ip ?? null,
        event.requestId ?? null,
        event.details ? JSON.stringify(event.details) : null,
      ],
    );
  }

  async listAudit(filter: AuditFilter = {}): Promise<AuditRecord[]> {
    const where: string[] = [];
    const values: unknown[] = [];
    const add = (column: string, op: string, value: unknown) => {
      if (value === undefined) return;
      values.push(value);
      where.push(`${column} ${op} $${values.length}`);
    };
    add('actor_user_id', '=', filter.actor);
    add('action', '=', filter.action);
    add('time', '>=', filter.since && new Date(filter.since).toISOString());
    add('time', '<', filter.until && new Date(filter.until).toISOString());
    add('id', '<', filter.beforeId);
    values.push(filter.limit ?? 100);
    const sql = `SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${values.length}`;
    return (await this.#all(sql, values)).map(toAudit);
  }

  // Jobs

  async createJob(job: { userId: string; name: string | null; requests: JobRecord['requests'] }, options: CreateJobOptions = {}): Promise<JobRecord> {
    const results: JobResult[] = job.requests.map((_, index) => ({ index, status: 'queued' }));
    return this.#transaction(async (client) => {
      if (options.maxActive) {
        // The user's row lock serialises job creation per user, on every replica: racing creates count one after the other.
        await client.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [job.userId]);
        const row = await this.#one("SELECT COUNT(*) AS n FROM jobs WHERE user_id = $1 AND status IN ('queued', 'running')", [job.userId], client);
        if (Number(row!.n) >= options.maxActive) throw new JobLimitError(Number(row!.n));
      }
      const row = await this.#one(
        `INSERT INTO jobs (id, user_id, name, status, requests, results, created_at) VALUES ($1, $2, $3, 'queued', $4, $5, $6) RETURNING *`,
        [randomUUID(), job.userId, job.name, JSON.stringify(job.requests), JSON.stringify(results), now()],
        client,
      );
      const created = toJob(row!);
      await options.dispatch?.(created, { executeSql: (text, values) => client.query(text, values) });
      return created;
    });
  }

  async getJob(id: string): Promise<JobRecord | undefined> {
    const row = await this.#one('SELECT * FROM jobs WHERE id = $1', [id]);
    return row && toJob(row);
  }

  async listJobs(filter: JobFilter = {}): Promise<JobRecord[]> {
    const where: string[] = [];
    const values: unknown[] = [];
    if (filter.userId !== undefined) {
      values.push(filter.userId);
      where.push(`user_id = $${values.length}`);
    }
    if (filter.beforeSeq !== undefined) {
      values.push(filter.beforeSeq);
      where.push(`seq < $${values.length}`);
    }
    values.push(filter.limit ?? 100);
    const sql = `SELECT * FROM jobs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT $${values.length}`;
    return (await this.#all(sql, values)).map(toJob);
  }

  async listUnfinishedJobIds(): Promise<string[]> {
    return (await this.#all("SELECT id FROM jobs WHERE status IN ('queued', 'running') ORDER BY seq")).map((row) => String(row.id));
  }

  async claimNextJob(worker: string): Promise<JobRecord | undefined> {
    // SKIP LOCKED: workers claiming at once each take a different job, none waits on another.
    const row = await this.#one(
      `UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, $1), worker = $2
       WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *`,
      [now(), worker],
    );
    return row && toJob(row);
  }

  async takeJob(id: string, worker: string): Promise<JobRecord | undefined> {
    return this.#transaction(async (client) => {
      const row = await this.#one("SELECT * FROM jobs WHERE id = $1 AND status IN ('queued', 'running') FOR UPDATE", [id], client);
      if (!row) return undefined;
      const results = toJob(row).results.map((r): JobResult => (r.status === 'running' ? { index: r.index, status: 'queued' } : r));
      const updated = await this.#one(
        "UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, $1), worker = $2, results = $3 WHERE id = $4 RETURNING *",
        [now(), worker, JSON.stringify(results), id],
        client,
      );
      return toJob(updated!);
    });
  }

  async saveJobResults(id: string, results: JobResult[], worker: string): Promise<boolean> {
    return this.#changed("UPDATE jobs SET results = $1 WHERE id = $2 AND status = 'running' AND worker = $3", [JSON.stringify(results), id, worker]);
  }

  async finishJob(id: string, status: 'succeeded' | 'failed', results: JobResult[], worker: string): Promise<boolean> {
    return this.#changed(
      "UPDATE jobs SET status = $1, results = $2, finished_at = $3, worker = NULL WHERE id = $4 AND status = 'running' AND worker = $5",
      [status, JSON.stringify(results), now(), id, worker],
    );
  }

  async cancelJob(id: string): Promise<{ job: JobRecord; cancelled: boolean } | undefined> {
    return this.#transaction(async (client) => {
      const row = await this.#one('SELECT * FROM jobs WHERE id = $1 FOR UPDATE', [id], client);
      if (!row) return undefined;
      const job = toJob(row);
      if (job.status !== 'queued' && job.status !== 'running') return { job, cancelled: false };
      const results = job.results.map((r): JobResult => (isUnfinished(r) ? { index: r.index, status: 'cancelled' } : r));
      const updated = await this.#one(
        "UPDATE jobs SET status = 'cancelled', results = $1, finished_at = $2, worker = NULL WHERE id = $3 RETURNING *",
        [JSON.stringify(results), now(), id],
        client,
      );
      return { job: toJob(updated!), cancelled: true };
    });
  }

  async requeueRunningJobs(filter: { worker?: string } = {}): Promise<number> {
    return this.#transaction(async (client) => {
      const where = ["status = 'running'"];
      const values: unknown[] = [];
      if (filter.worker !== undefined) {
        values.push(filter.worker);
        where.push(`worker = $${values.length}`);
      }
      const running = (await this.#all(`SELECT * FROM jobs WHERE ${where.join(' AND ')} FOR UPDATE SKIP LOCKED`, values, client)).map(toJob);
      for (const job of running) {
        const results = job.results.map((r): JobResult => (isUnfinished(r) ? { index: r.index, status: 'queued' } : r));
        await client.query("UPDATE jobs SET status = 'queued', results = $1, worker = NULL WHERE id = $2", [JSON.stringify(results), job.id]);
      }
      return running.length;
    });
  }

  async countJobsByStatus(): Promise<Partial<Record<JobStatus, number>>> {
    const rows = await this.#all('SELECT status, COUNT(*) AS n FROM jobs GROUP BY status');
    return Object.fromEntries(rows.map((row) => [String(row.status), Number(row.n)]));
  }

  // Usage

  async addUsage(deltas: readonly UsageDelta[]): Promise<void> {
    if (deltas.length === 0) return;
    await this.#transaction(async (client) => {
      for (const d of deltas) {
        await client.query(
          `INSERT INTO usage (bucket, user_id, key_id, model, requests, prompt_tokens, completion_tokens) VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (bucket, user_id, key_id, model) DO UPDATE SET
             requests = usage.requests + excluded.requests,
             prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens,
             completion_tokens = usage.completion_tokens + excluded.completion_tokens`,
          [d.bucket, d.userId, d.keyId ?? '', d.model, d.requests, d.promptTokens, d.completionTokens],
        );
      }
    });
  }

  async queryUsage(query: UsageQuery): Promise<UsageTotals[]> {
    const columns: Record<UsageDimension, string> = { user: 'user_id', key: 'key_id', model: 'model', day: 'substr(bucket, 1, 10)' };
    const where: string[] = [];
    const values: unknown[] = [];
    const filter = (column: string, op: string, value: string | undefined) => {
      if (value === undefined) return;
      values.push(value);
      where.push(`${column} ${op} $${values.length}`);
    };
    filter('user_id', '=', query.userId);
    filter('key_id', '=', query.keyId);
    filter('model', '=', query.model);
    // Buckets are whole hours named by their start: `since` counts from the start of its hour.
    filter('bucket', '>=', query.since === undefined ? undefined : hourOf(query.since));
    filter('bucket', '<', query.until === undefined ? undefined : new Date(query.until).toISOString());
    const groups = [...new Set(query.groupBy)];
    const select = (dimension: UsageDimension, alias: string) => (groups.includes(dimension) ? `${columns[dimension]} AS ${alias}` : `NULL AS ${alias}`);
    const sql = `SELECT ${select('user', 'user_id')}, ${select('key', 'key_id')}, ${select('model', 'model')}, ${select('day', 'day')},
        COALESCE(SUM(requests), 0) AS requests, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens, COALESCE(SUM(completion_tokens), 0) AS completion_tokens
      FROM usage ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ${groups.length ? `GROUP BY ${groups.map((g) => columns[g]).join(', ')} ORDER BY ${groups.map((g) => columns[g]).join(', ')}` : ''}`;
    // Without grouping the one row is the total (zeros when nothing matched).
    return (await this.#all(sql, values)).map((row) => ({
      userId: row.user_id == null ? null : String(row.user_id),
      keyId: row.key_id == null || row.key_id === '' ? null : String(row.key_id),
      model: row.model == null ? null : String(row.model),
      day: row.day == null ? null : String(row.day),
      requests: Number(row.requests),
      promptTokens: Number(row.prompt_tokens),
      completionTokens: Number(row.completion_tokens),
    }));
  }

  // Idempotency keys

  async claimIdempotencyKey(
    scope: string,
    key: string,
    claim: { fingerprint: string; now: number; ttlMs: number; maxPerScope: number },
  ): Promise<IdempotencyRecord | undefined> {
    return this.#transaction(async (client) => {
      // One claim per scope at a time across replicas: the count, the eviction and the insert agree.
      await client.query("SELECT pg_advisory_xact_lock(hashtext('inferno.idempotency:' || $1))", [scope]);
      const row = await this.#one('SELECT * FROM idempotency_keys WHERE scope = $1 AND key = $2', [scope, key], client);
      if (row && Number(row.expires_at) > claim.now) return toIdempotency(row);
      if (row) await client.query('DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2', [scope, key]);
      const count = Number((await this.#one('SELECT COUNT(*) AS n FROM idempotency_keys WHERE scope = $1', [scope], client))!.n);
      if (count >= claim.maxPerScope) {
        // Completed keys go first, oldest first: a pending one belongs to a request still running.
        await client.query(
          `DELETE FROM idempotency_keys WHERE (scope, key) IN (SELECT scope, key FROM idempotency_keys WHERE scope = $1
           ORDER BY state = 'pending', created_at LIMIT $2)`,
          [scope, count - claim.maxPerScope + 1],
        );
      }
      await client.query("INSERT INTO idempotency_keys (scope, key, fingerprint, state, created_at, expires_at) VALUES ($1, $2, $3, 'pending', $4, $5)", [
        scope,
        key,
        claim.fingerprint,
        claim.now,
        claim.now + claim.ttlMs,
      ]);
      return undefined;
    });
  }

  async completeIdempotencyKey(scope: string, key: string, response: StoredResponse): Promise<void> {
    await this.#pool.query("UPDATE idempotency_keys SET state = 'complete', status = $1, headers = $2, body = $3 WHERE scope = $4 AND key = $5", [
      response.status,
      JSON.stringify(response.headers),
      response.body,
      scope,
      key,
    ]);
  }

  async releaseIdempotencyKey(scope: string, key: string): Promise<void> {
    await this.#pool.query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND state = 'pending'", [scope, key]);
  }

  async sweepIdempotencyKeys(now: number, pendingBefore?: number): Promise<number> {
    let changes = (await this.#pool.query('DELETE FROM idempotency_keys WHERE expires_at <= $1', [now])).rowCount ?? 0;
    if (pendingBefore !== undefined) {
      changes += (await this.#pool.query("DELETE FROM idempotency_keys WHERE state = 'pending' AND created_at < $1", [pendingBefore])).rowCount ?? 0;
    }
    return changes;
  }

  // Secrets

  async getOrCreateSecret(name: string, candidate: string): Promise<string> {
    await this.#pool.query('INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [name, candidate]);
    return String((await this.#one('SELECT value FROM server_secrets WHERE name = $1', [name]))!.value);
  }

  // Settings

  async getSettings(): Promise<Record<string, unknown>> {
    const rows = await this.#all('SELECT key, value FROM settings');
    return Object.fromEntries(rows.map((row) => [String(row.key), JSON.parse(String(row.value))]));
  }

  async putSettings(settings: Record<string, unknown>): Promise<void> {
    await this.#transaction(async (client) => {
      for (const [key, value] of Object.entries(settings)) {
        await client.query(
          'INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
          [key, JSON.stringify(value), now()],
        );
      }
    });
  }
}
