import { randomUUID } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import { MIGRATIONS } from './migrations.js';
import { hourOf, isUnfinished, now, toApiKey, toAudit, toIdempotency, toJob, toUser, type Row } from './rows.js';
import { JobLimitError, KeyLimitError, LastAdminError, UsernameTakenError } from './types.js';
import type {
  ApiKeyRecord,
  CreateJobOptions,
  AuditEvent,
  AuditFilter,
  AuditRecord,
  IdempotencyRecord,
  JobFilter,
  JobRecord,
  JobResult,
  JobStatus,
  Role,
  Store,
  StoredResponse,
  UsageDelta,
  UsageDimension,
  UsageQuery,
  UsageTotals,
  UserRecord,
} from './types.js';

/** The embedded store: one SQLite file in the data dir, WAL mode, migrated on open. */
export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  readonly #db: DatabaseSync;

  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const file = path.join(dataDir, 'inferno.db');
    // Owner-only, whatever the umask: SQLite gives the -wal and -shm files the database's mode.
    closeSync(openSync(file, 'a', 0o600));
    for (const name of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(name)) chmodSync(name, 0o600);
    this.#db = new DatabaseSync(file);
    // WAL with synchronous=NORMAL: no corruption on a crash, and no fsync on every small write
    // (the last moments before a power cut may be lost, which suits this data).
    this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;');
    this.#migrate();
  }

  #migrate(): void {
    const version = Number((this.#db.prepare('PRAGMA user_version').get() as Row).user_version);
    if (version > MIGRATIONS.length) {
      throw new Error(`The database schema (version ${version}) is newer than this server (${MIGRATIONS.length}); upgrade the server.`);
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.#db.exec('BEGIN');
      try {
        this.#db.exec(MIGRATIONS[v]!);
        this.#db.exec(`PRAGMA user_version = ${v + 1}`);
        this.#db.exec('COMMIT');
      } catch (error) {
        this.#db.exec('ROLLBACK');
        throw error;
      }
    }
  }

  async ping(): Promise<boolean> {
    return this.#db.isOpen;
  }

  #dataVersion?: ReturnType<DatabaseSync['prepare']>;

  /**
   * SQLite's `data_version`: it changes when another connection (another process: the
   * `reset-password` CLI, a hand edit) commits to the database, never for this connection's own
   * writes. A few microseconds; the credential cache asks it before answering from memory.
   */
  dataVersion(): number {
    this.#dataVersion ??= this.#db.prepare('PRAGMA data_version');
    return Number((this.#dataVersion.get() as Row).data_version);
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }

  // Users

  async countUsers(): Promise<number> {
    return Number((this.#db.prepare('SELECT COUNT(*) AS n FROM users').get() as Row).n);
  }

  async createUser(user: { username: string; passwordHash: string; role: Role }): Promise<UserRecord> {
    const at = now();
    try {
      const row = this.#db
        .prepare(
          `INSERT INTO users (id, username, password_hash, role, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?) RETURNING *`,
        )
        .get(randomUUID(), user.username, user.passwordHash, user.role, at, at) as Row;
      return toUser(row);
    } catch (error) {
      if (/UNIQUE constraint failed: users\.username/.test(String((error as Error).message))) throw new UsernameTakenError();
      throw error;
    }
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const row = this.#db.prepare('SELECT * FROM users WHERE id = ?').get(id) as Row | undefined;
    return row && toUser(row);
  }

  async getUserByUsername(username: string): Promise<UserRecord | undefined> {
    const row = this.#db.prepare('SELECT * FROM users WHERE username = ?').get(username) as Row | undefined;
    return row && toUser(row);
  }

  async listUsers(): Promise<UserRecord[]> {
    return (this.#db.prepare('SELECT * FROM users ORDER BY created_at, rowid').all() as Row[]).map(toUser);
  }

  async updateUser(
    id: string,
    changes: Partial<Pick<UserRecord, 'passwordHash' | 'role' | 'disabled' | 'sessionVersion'>>,
    options: { keepEnabledAdmin?: boolean } = {},
  ): Promise<UserRecord | undefined> {
    return this.#transaction(() => {
      const updated = this.#updateUser(id, changes);
      if (options.keepEnabledAdmin) this.#assertEnabledAdmin();
      return updated;
    });
  }

  #updateUser(id: string, changes: Partial<Pick<UserRecord, 'passwordHash' | 'role' | 'disabled' | 'sessionVersion'>>): UserRecord | undefined {
    const columns: Record<string, SQLInputValue | undefined> = {
      password_hash: changes.passwordHash,
      role: changes.role,
      disabled: changes.disabled === undefined ? undefined : changes.disabled ? 1 : 0,
      session_version: changes.sessionVersion,
    };
    const set = Object.entries(columns).filter(([, value]) => value !== undefined);
    const assignments = [...set.map(([column]) => `${column} = ?`), 'updated_at = ?'].join(', ');
    const row = this.#db
      .prepare(`UPDATE users SET ${assignments} WHERE id = ? RETURNING *`)
      .get(...set.map(([, value]) => value as SQLInputValue), now(), id) as Row | undefined;
    return row && toUser(row);
  }

  async deleteUser(id: string, options: { keepEnabledAdmin?: boolean } = {}): Promise<boolean> {
    return this.#transaction(() => {
      const deleted = Number(this.#db.prepare('DELETE FROM users WHERE id = ?').run(id).changes) > 0;
      if (options.keepEnabledAdmin) this.#assertEnabledAdmin();
      return deleted;
    });
  }

  /** Inside a transaction: throwing rolls the change back. */
  #assertEnabledAdmin(): void {
    const row = this.#db.prepare("SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND disabled = 0").get() as Row;
    if (Number(row.n) === 0) throw new LastAdminError();
  }

  // API keys

  async createApiKey(key: Omit<ApiKeyRecord, 'id' | 'createdAt' | 'lastUsedAt' | 'revokedAt'>, options: { maxActive?: number } = {}): Promise<ApiKeyRecord> {
    return this.#transaction(() => {
      if (options.maxActive !== undefined) {
        const at = now();
        const row = this.#db
          .prepare('SELECT COUNT(*) AS n FROM api_keys WHERE user_id = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)')
          .get(key.userId, at) as Row;
        if (Number(row.n) >= options.maxActive) throw new KeyLimitError(Number(row.n));
      }
      return this.#createApiKey(key);
    });
  }

  #createApiKey(key: Omit<ApiKeyRecord, 'id' | 'createdAt' | 'lastUsedAt' | 'revokedAt'>): ApiKeyRecord {
    const row = this.#db
      .prepare(
        `INSERT INTO api_keys (id, user_id, name, prefix, key_hash, permissions, created_at, expires_at, rate_limit_per_minute)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
      )
      .get(randomUUID(), key.userId, key.name, key.prefix, key.keyHash, JSON.stringify(key.permissions), now(), key.expiresAt, key.rateLimitPerMinute) as Row;
    return toApiKey(row);
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | undefined> {
    const row = this.#db.prepare('SELECT * FROM api_keys WHERE id = ?').get(id) as Row | undefined;
    return row && toApiKey(row);
  }

  async findApiKeyByHash(keyHash: string): Promise<ApiKeyRecord | undefined> {
    const row = this.#db.prepare('SELECT * FROM api_keys WHERE key_hash = ?').get(keyHash) as Row | undefined;
    return row && toApiKey(row);
  }

  async listApiKeys(userId: string): Promise<ApiKeyRecord[]> {
    return (
      this.#db
        .prepare('SELECT * FROM api_keys WHERE user_id = ? AND revoked_at IS NULL ORDER BY created_at DESC, rowid DESC')
        .all(userId) as Row[]
    ).map(toApiKey);
  }

  async revokeApiKey(id: string): Promise<boolean> {
    const result = this.#db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now(), id);
    return Number(result.changes) > 0;
  }

  async touchApiKey(id: string, at: string): Promise<void> {
    this.#db.prepare('UPDATE api_keys SET last_used_at = ? WHERE id = ?').run(at, id);
  }

  // Revoked tokens

  async revokeToken(jti: string, expiresAtMs: number): Promise<void> {
    this.#db.prepare('DELETE FROM revoked_tokens WHERE expires_at < ?').run(Date.now());
    this.#db.prepare('INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)').run(jti, expiresAtMs);
  }

  async isTokenRevoked(jti: string): Promise<boolean> {
    return this.#db.prepare('SELECT 1 FROM revoked_tokens WHERE jti = ?').get(jti) !== undefined;
  }

  // Audit log

  async recordAudit(event: AuditEvent): Promise<void> {
    this.#db
      .prepare(
        `INSERT INTO audit_log (time, action, outcome, actor_user_id, actor_key_id, target, ip, request_id, details)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        now(),
        event.action,
        event.outcome,
        event.actorUserId ?? null,
        event.actorKeyId ?? null,
        event.target ?? null,
        event.ip ?? null,
        event.requestId ?? null,
        event.details ? JSON.stringify(event.details) : null,
      );
  }

  async listAudit(filter: AuditFilter = {}): Promise<AuditRecord[]> {
    const where: string[] = [];
    const values: SQLInputValue[] = [];
    const add = (clause: string, value: SQLInputValue | undefined) => {
      if (value === undefined) return;
      where.push(clause);
      values.push(value);
    };
    add('actor_user_id = ?', filter.actor);
    add('action = ?', filter.action);
    add('time >= ?', filter.since && new Date(filter.since).toISOString());
    add('time < ?', filter.until && new Date(filter.until).toISOString());
    add('id < ?', filter.beforeId);
    const sql = `SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    return (this.#db.prepare(sql).all(...values, filter.limit ?? 100) as Row[]).map(toAudit);
  }

  // Jobs

  async createJob(job: { userId: string; name: string | null; requests: JobRecord['requests'] }, options: CreateJobOptions = {}): Promise<JobRecord> {
    if (options.dispatch) throw new Error('store: the SQLite store runs jobs in process; it has no queue engine to dispatch to');
    const results: JobResult[] = job.requests.map((_, index) => ({ index, status: 'queued' }));
    // BEGIN IMMEDIATE: one writer at a time, also across processes on the file, so racing creates count one after the other.
    return this.#transaction(() => {
      if (options.maxActive) {
        const row = this.#db.prepare("SELECT COUNT(*) AS n FROM jobs WHERE user_id = ? AND status IN ('queued', 'running')").get(job.userId) as Row;
        if (Number(row.n) >= options.maxActive) throw new JobLimitError(Number(row.n));
      }
      const row = this.#db
        .prepare(
          `INSERT INTO jobs (id, user_id, name, status, requests, results, created_at)
           VALUES (?, ?, ?, 'queued', ?, ?, ?) RETURNING *`,
        )
        .get(randomUUID(), job.userId, job.name, JSON.stringify(job.requests), JSON.stringify(results), now()) as Row;
      return toJob(row);
    });
  }

  async getJob(id: string): Promise<JobRecord | undefined> {
    return this.#getJob(id);
  }

  #getJob(id: string): JobRecord | undefined {
    const row = this.#db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as Row | undefined;
    return row && toJob(row);
  }

  async listJobs(filter: JobFilter = {}): Promise<JobRecord[]> {
    const where: string[] = [];
    const values: SQLInputValue[] = [];
    if (filter.userId !== undefined) {
      where.push('user_id = ?');
      values.push(filter.userId);
    }
    if (filter.beforeSeq !== undefined) {
      where.push('seq < ?');
      values.push(filter.beforeSeq);
    }
    const sql = `SELECT * FROM jobs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`;
    return (this.#db.prepare(sql).all(...values, filter.limit ?? 100) as Row[]).map(toJob);
  }

  async listUnfinishedJobIds(): Promise<string[]> {
    return (this.#db.prepare("SELECT id FROM jobs WHERE status IN ('queued', 'running') ORDER BY seq").all() as Row[]).map((row) => String(row.id));
  }

  async claimNextJob(worker: string): Promise<JobRecord | undefined> {
    const row = this.#db
      .prepare(
        `UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, ?), worker = ?
         WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1) RETURNING *`,
      )
      .get(now(), worker) as Row | undefined;
    return row && toJob(row);
  }

  async takeJob(id: string, worker: string): Promise<JobRecord | undefined> {
    return this.#transaction(() => {
      const job = this.#getJob(id);
      if (!job || (job.status !== 'queued' && job.status !== 'running')) return undefined;
      const results = job.results.map((r): JobResult => (r.status === 'running' ? { index: r.index, status: 'queued' } : r));
      this.#db
        .prepare("UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, ?), worker = ?, results = ? WHERE id = ?")
        .run(now(), worker, JSON.stringify(results), id);
      return this.#getJob(id);
    });
  }

  async saveJobResults(id: string, results: JobResult[], worker: string): Promise<boolean> {
    const result = this.#db.prepare("UPDATE jobs SET results = ? WHERE id = ? AND status = 'running' AND worker = ?").run(JSON.stringify(results), id, worker);
    return Number(result.changes) > 0;
  }

  async finishJob(id: string, status: 'succeeded' | 'failed', results: JobResult[], worker: string): Promise<boolean> {
    const result = this.#db
      .prepare("UPDATE jobs SET status = ?, results = ?, finished_at = ?, worker = NULL WHERE id = ? AND status = 'running' AND worker = ?")
      .run(status, JSON.stringify(results), now(), id, worker);
    return Number(result.changes) > 0;
  }

  async cancelJob(id: string): Promise<{ job: JobRecord; cancelled: boolean } | undefined> {
    return this.#transaction(() => {
      const job = this.#getJob(id);
      if (!job) return undefined;
      if (job.status !== 'queued' && job.status !== 'running') return { job, cancelled: false };
      const results = job.results.map((r): JobResult => (isUnfinished(r) ? { index: r.index, status: 'cancelled' } : r));
      this.#db
        .prepare("UPDATE jobs SET status = 'cancelled', results = ?, finished_at = ?, worker = NULL WHERE id = ?")
        .run(JSON.stringify(results), now(), id);
      return { job: this.#getJob(id)!, cancelled: true };
    });
  }

  async requeueRunningJobs(filter: { worker?: string } = {}): Promise<number> {
    return this.#transaction(() => {
      const where = ["status = 'running'"];
      const values: SQLInputValue[] = [];
      if (filter.worker !== undefined) {
        where.push('worker = ?');
        values.push(filter.worker);
      }
      const running = (this.#db.prepare(`SELECT * FROM jobs WHERE ${where.join(' AND ')}`).all(...values) as Row[]).map(toJob);
      const update = this.#db.prepare("UPDATE jobs SET status = 'queued', results = ?, worker = NULL WHERE id = ?");
      for (const job of running) {
        const results = job.results.map((r): JobResult => (isUnfinished(r) ? { index: r.index, status: 'queued' } : r));
        update.run(JSON.stringify(results), job.id);
      }
      return running.length;
    });
  }

  async countJobsByStatus(): Promise<Partial<Record<JobStatus, number>>> {
    const rows = this.#db.prepare('SELECT status, COUNT(*) AS n FROM jobs GROUP BY status').all() as Row[];
    return Object.fromEntries(rows.map((row) => [String(row.status), Number(row.n)]));
  }

  // Usage

  async addUsage(deltas: readonly UsageDelta[]): Promise<void> {
    if (deltas.length === 0) return;
    const upsert = this.#db.prepare(
      `INSERT INTO usage (bucket, user_id, key_id, model, requests, prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (bucket, user_id, key_id, model) DO UPDATE SET
         requests = requests + excluded.requests,
         prompt_tokens = prompt_tokens + excluded.prompt_tokens,
         completion_tokens = completion_tokens + excluded.completion_tokens`,
    );
    this.#transaction(() => {
      for (const d of deltas) upsert.run(d.bucket, d.userId, d.keyId ?? '', d.model, d.requests, d.promptTokens, d.completionTokens);
    });
  }

  async queryUsage(query: UsageQuery): Promise<UsageTotals[]> {
    const columns: Record<UsageDimension, string> = { user: 'user_id', key: 'key_id', model: 'model', day: 'substr(bucket, 1, 10)' };
    const where: string[] = [];
    const params: SQLInputValue[] = [];
    const filter = (condition: string, value: string | undefined) => {
      if (value === undefined) return;
      where.push(condition);
      params.push(value);
    };
    filter('user_id = ?', query.userId);
    filter('key_id = ?', query.keyId);
    filter('model = ?', query.model);
    // Buckets are whole hours named by their start: `since` counts from the start of its hour.
    filter('bucket >= ?', query.since === undefined ? undefined : hourOf(query.since));
    filter('bucket < ?', query.until === undefined ? undefined : new Date(query.until).toISOString());
    const groups = [...new Set(query.groupBy)];
    const select = (dimension: UsageDimension, alias: string) => (groups.includes(dimension) ? `${columns[dimension]} AS ${alias}` : `NULL AS ${alias}`);
    const sql = `SELECT ${select('user', 'user_id')}, ${select('key', 'key_id')}, ${select('model', 'model')}, ${select('day', 'day')},
        COALESCE(SUM(requests), 0) AS requests, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens, COALESCE(SUM(completion_tokens), 0) AS completion_tokens
      FROM usage ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ${groups.length ? `GROUP BY ${groups.map((g) => columns[g]).join(', ')} ORDER BY ${groups.map((g) => columns[g]).join(', ')}` : ''}`;
    const rows = this.#db.prepare(sql).all(...params) as Row[];
    // Without grouping the one row is the total (zeros when nothing matched).
    return rows.map((row) => ({
      userId: row.user_id === null ? null : String(row.user_id),
      keyId: row.key_id === null || row.key_id === '' ? null : String(row.key_id),
      model: row.model === null ? null : String(row.model),
      day: row.day === null ? null : String(row.day),
      requests: Number(row.requests),
      promptTokens: Number(row.prompt_tokens),
      completionTokens: Number(row.completion_tokens),
    }));
  }

  #transaction<T>(work: () => T): T {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const result = work();
      this.#db.exec('COMMIT');
      return result;
    } catch (error) {
      this.#db.exec('ROLLBACK');
      throw error;
    }
  }

  // Secrets

  async getOrCreateSecret(name: string, candidate: string): Promise<string> {
    this.#db.prepare('INSERT OR IGNORE INTO server_secrets (name, value) VALUES (?, ?)').run(name, candidate);
    return String((this.#db.prepare('SELECT value FROM server_secrets WHERE name = ?').get(name) as Row).value);
  }

  // Settings

  async getSettings(): Promise<Record<string, unknown>> {
    const rows = this.#db.prepare('SELECT key, value FROM settings').all() as Row[];
    return Object.fromEntries(rows.map((row) => [String(row.key), JSON.parse(String(row.value))]));
  }

  async putSettings(settings: Record<string, unknown>): Promise<void> {
    const upsert = this.#db.prepare(
      'INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
    );
    this.#db.exec('BEGIN');
    try {
      for (const [key, value] of Object.entries(settings)) upsert.run(key, JSON.stringify(value), now());
      this.#db.exec('COMMIT');
    } catch (error) {
      this.#db.exec('ROLLBACK');
      throw error;
    }
  }

  // Idempotency keys

  async claimIdempotencyKey(
    scope: string,
    key: string,
    claim: { fingerprint: string; now: number; ttlMs: number; maxPerScope: number },
  ): Promise<IdempotencyRecord | undefined> {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const row = this.#db.prepare('SELECT * FROM idempotency_keys WHERE scope = ? AND key = ?').get(scope, key) as Row | undefined;
      if (row && Number(row.expires_at) > claim.now) {
        this.#db.exec('COMMIT');
        return toIdempotency(row);
      }
      if (row) this.#db.prepare('DELETE FROM idempotency_keys WHERE scope = ? AND key = ?').run(scope, key);
      const count = Number((this.#db.prepare('SELECT COUNT(*) AS n FROM idempotency_keys WHERE scope = ?').get(scope) as Row).n);
      if (count >= claim.maxPerScope) {
        // Completed keys go first, oldest first: a pending one belongs to a request still running.
        this.#db
          .prepare(
            `DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys WHERE scope = ?
             ORDER BY state = 'pending', created_at LIMIT ?)`,
          )
          .run(scope, count - claim.maxPerScope + 1);
      }
      this.#db
        .prepare("INSERT INTO idempotency_keys (scope, key, fingerprint, state, created_at, expires_at) VALUES (?, ?, ?, 'pending', ?, ?)")
        .run(scope, key, claim.fingerprint, claim.now, claim.now + claim.ttlMs);
      this.#db.exec('COMMIT');
      return undefined;
    } catch (error) {
      this.#db.exec('ROLLBACK');
      throw error;
    }
  }

  async completeIdempotencyKey(scope: string, key: string, response: StoredResponse): Promise<void> {
    this.#db
      .prepare("UPDATE idempotency_keys SET state = 'complete', status = ?, headers = ?, body = ? WHERE scope = ? AND key = ?")
      .run(response.status, JSON.stringify(response.headers), response.body, scope, key);
  }

  async releaseIdempotencyKey(scope: string, key: string): Promise<void> {
    this.#db.prepare("DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND state = 'pending'").run(scope, key);
  }

  async sweepIdempotencyKeys(now: number, pendingBefore?: number): Promise<number> {
    let changes = Number(this.#db.prepare('DELETE FROM idempotency_keys WHERE expires_at <= ?').run(now).changes);
    if (pendingBefore !== undefined) {
      changes += Number(this.#db.prepare("DELETE FROM idempotency_keys WHERE state = 'pending' AND created_at < ?").run(pendingBefore).changes);
    }
    return changes;
  }
}
