import type { InferenceRequest, JobResult, JobStatus, Permission, Role } from '../gen/types.gen.js';

export type { JobResult, JobStatus, Permission, Role };

export interface UserRecord {
  id: string;
  username: string;
  passwordHash: string;
  role: Role;
  disabled: boolean;
  /** Carried in each JWT (`sv`); bumped on password change and disable, which ends every session. */
  sessionVersion: number;
  createdAt: string;
  updatedAt: string;
}

export interface ApiKeyRecord {
  id: string;
  userId: string;
  name: string;
  prefix: string;
  keyHash: string;
  permissions: Permission[];
  /** The key's own budget per minute, below its user's; null: only the user's budget applies. */
  rateLimitPerMinute: number | null;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface AuditEvent {
  action: string;
  outcome: 'success' | 'failure' | 'denied';
  actorUserId?: string | null;
  actorKeyId?: string | null;
  /** What the action was about: a username, key id, route... never a secret. */
  target?: string | null;
  ip?: string | null;
  requestId?: string | null;
  details?: Record<string, unknown> | null;
}

export interface AuditRecord extends Required<AuditEvent> {
  id: number;
  time: string;
}

export interface UserStore {
  countUsers(): Promise<number>;
  getUser(id: string): Promise<UserRecord | undefined>;
  getUserByUsername(username: string): Promise<UserRecord | undefined>;
  listUsers(): Promise<UserRecord[]>;
  /** Throws `UsernameTakenError` when the name is taken (in any case), also for two racing creates. */
  createUser(user: { username: string; passwordHash: string; role: Role }): Promise<UserRecord>;
  /**
   * With `keepEnabledAdmin`, the change is refused with `LastAdminError` when it would leave no
   * enabled admin; the check and the write are one transaction, so two racing changes cannot both pass.
   */
  updateUser(
    id: string,
    changes: Partial<Pick<UserRecord, 'passwordHash' | 'role' | 'disabled' | 'sessionVersion'>>,
    options?: { keepEnabledAdmin?: boolean },
  ): Promise<UserRecord | undefined>;
  deleteUser(id: string, options?: { keepEnabledAdmin?: boolean }): Promise<boolean>;
}

export interface ApiKeyStore {
  /**
   * With `maxActive`, refused with `KeyLimitError` when the user already has that many active
   * (unrevoked, unexpired) keys; counted and created in one transaction.
   */
  createApiKey(key: Omit<ApiKeyRecord, 'id' | 'createdAt' | 'lastUsedAt' | 'revokedAt'>, options?: { maxActive?: number }): Promise<ApiKeyRecord>;
  getApiKey(id: string): Promise<ApiKeyRecord | undefined>;
  findApiKeyByHash(keyHash: string): Promise<ApiKeyRecord | undefined>;
  listApiKeys(userId: string): Promise<ApiKeyRecord[]>;
  revokeApiKey(id: string): Promise<boolean>;
  touchApiKey(id: string, at: string): Promise<void>;
}

/** Revoked JWT ids, kept until the token would have expired anyway. */
export interface RevocationStore {
  revokeToken(jti: string, expiresAtMs: number): Promise<void>;
  isTokenRevoked(jti: string): Promise<boolean>;
}

export interface AuditFilter {
  actor?: string;
  action?: string;
  /** ISO time, inclusive. */
  since?: string;
  /** ISO time, exclusive. */
  until?: string;
  /** Only entries older than this id (cursor pagination, newest first). */
  beforeId?: number;
  limit?: number;
}

export interface AuditStore {
  recordAudit(event: AuditEvent): Promise<void>;
  listAudit(filter?: AuditFilter): Promise<AuditRecord[]>;
}

/** Runtime settings changed through the API, persisted as `section.key` → JSON value. */
export interface SettingsStore {
  getSettings(): Promise<Record<string, unknown>>;
  putSettings(settings: Record<string, unknown>): Promise<void>;
}

export interface JobRecord {
  id: string;
  /** Submission order: the queue's order and the list's cursor. */
  seq: number;
  userId: string;
  name: string | null;
  status: JobStatus;
  requests: InferenceRequest[];
  /** One per request, in request order. */
  results: JobResult[];
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface JobFilter {
  userId?: string;
  /** Only jobs submitted before this one (cursor pagination, newest first). */
  beforeSeq?: number;
  limit?: number;
}

/**
 * Runs statements inside the store's open transaction (PostgreSQL): what a queue engine on the same
 * database needs to enqueue work atomically with the row that describes it.
 */
export interface SqlExecutor {
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

export interface CreateJobOptions {
  /**
   * Refused with `JobLimitError` when the user already has this many unfinished (queued or
   * running) jobs; counted and created in one transaction under a lock on the user, so racing
   * creates (on several replicas too) cannot pass it together. 0 or absent: no cap.
   */
  maxActive?: number;
  /**
   * PostgreSQL only: called inside the creating transaction, after the insert; a throw undoes the
   * job. The shared mode's queue engine (pg-boss) sends its dispatch message here, so a job is
   * never stored without being dispatched, nor dispatched without being stored.
   */
  dispatch?: (job: JobRecord, tx: SqlExecutor) => Promise<void>;
}

/**
 * Batch jobs and their results: the results store the API reads. Who runs a job is decided
 * elsewhere (the in-process runner alone on SQLite, pg-boss on PostgreSQL); the store only fences
 * writes: a job taken by a worker (its process-unique name) records it, and progress and the end
 * are saved only by that worker, so a worker that lost the job (cancelled, taken over) cannot
 * write over it. Progress is saved per request, so a job taken again resumes at its first
 * unfinished request.
 */
export interface JobStore {
  createJob(job: { userId: string; name: string | null; requests: InferenceRequest[] }, options?: CreateJobOptions): Promise<JobRecord>;
  getJob(id: string): Promise<JobRecord | undefined>;
  listJobs(filter?: JobFilter): Promise<JobRecord[]>;
  /** Ids of the queued and running jobs, oldest first. */
  listUnfinishedJobIds(): Promise<string[]>;
  /** Marks the oldest queued job running under `worker` and returns it; undefined when none is queued. */
  claimNextJob(worker: string): Promise<JobRecord | undefined>;
  /**
   * Marks job `id` running under `worker`, also when another worker had it (that one's writes stop
   * counting); requests left `running` go back to `queued`. Undefined when the job does not exist
   * or has ended (finished, cancelled).
   */
  takeJob(id: string, worker: string): Promise<JobRecord | undefined>;
  /** Saves a running job's progress; false when it is no longer running under this worker. */
  saveJobResults(id: string, results: JobResult[], worker: string): Promise<boolean>;
  /** Ends a running job; false when it is no longer running under this worker. */
  finishJob(id: string, status: 'succeeded' | 'failed', results: JobResult[], worker: string): Promise<boolean>;
  /**
   * Cancels a queued or running job: requests not finished become `cancelled`. Answers the job as
   * it is afterwards and whether this call cancelled it (false: it had already finished).
   */
  cancelJob(id: string): Promise<{ job: JobRecord; cancelled: boolean } | undefined>;
  /**
   * Puts running jobs back in the queue (their unfinished requests too): all of them, or only
   * those of `worker`. Answers how many.
   */
  requeueRunningJobs(filter?: { worker?: string }): Promise<number>;
}

/** A change refused because it would leave no enabled admin. */
export class LastAdminError extends Error {
  constructor() {
    super('This would leave no enabled admin');
  }
}

/** A username already taken (names compare without regard to case). */
export class UsernameTakenError extends Error {
  constructor() {
    super('A user with this username already exists');
  }
}

/** A key refused because its user already has `active` keys, the cap. */
export class KeyLimitError extends Error {
  constructor(readonly active: number) {
    super(`The user already has ${active} active API keys`);
  }
}

/** A job refused because its user already has `active` unfinished jobs, the cap. */
export class JobLimitError extends Error {
  constructor(readonly active: number) {
    super(`The user already has ${active} unfinished jobs`);
  }
}

/** Secrets generated once and shared by every replica on the store. */
export interface SecretStore {
  /** The stored value of `name`; when there is none yet, stores `candidate` (the first caller wins) and answers it. */
  getOrCreateSecret(name: string, candidate: string): Promise<string>;
}

/** The response stored under an idempotency key once its request completed. */
export interface StoredResponse {
  status: number;
  /** The headers that describe the body (`Content-Type`, `Location`), lower-case names. */
  headers: Record<string, string>;
  /** The body as sent, as text (JSON). */
  body: string;
}

/** What an idempotency key holds: a request still running (`pending`) or its stored response. */
export interface IdempotencyRecord {
  /** Hash of the request (method, path, query, body) that first used the key. */
  fingerprint: string;
  state: 'pending' | 'complete';
  /** Set when complete. */
  response: StoredResponse | undefined;
  /** Unix ms after which the key is forgotten. */
  expiresAt: number;
}

/**
 * Idempotency keys (`Idempotency-Key`): each (scope, key) maps to the first request's fingerprint
 * and, once it completed, its response. Asynchronous so that a shared backend (PostgreSQL) fits.
 */
export interface IdempotencyStore {
  /**
   * Claims `key` for a new request: answers `undefined` when this call claimed it (a `pending`
   * record now exists), else the record already there. Expired records count as absent. Keeps at
   * most `maxPerScope` records per scope, forgetting the oldest completed ones first.
   */
  claimIdempotencyKey(scope: string, key: string, claim: { fingerprint: string; now: number; ttlMs: number; maxPerScope: number }): Promise<IdempotencyRecord | undefined>;
  /** Stores the response of a claimed key. */
  completeIdempotencyKey(scope: string, key: string, response: StoredResponse): Promise<void>;
  /** Forgets a claimed key whose response is not kept (an error worth retrying, a stream). */
  releaseIdempotencyKey(scope: string, key: string): Promise<void>;
  /** Deletes expired records, and `pending` ones claimed before `pendingBefore` (their process died); answers how many. */
  sweepIdempotencyKeys(now: number, pendingBefore?: number): Promise<number>;
}

/** Jobs counted by state, for the metrics (read at scrape time). */
export interface JobStatsStore {
  countJobsByStatus(): Promise<Partial<Record<JobStatus, number>>>;
}

/** Usage added to one hourly bucket of one user, key (null: a login session) and model. */
export interface UsageDelta {
  /** The hour's start, ISO 8601 UTC (`2026-12-01T09:00:00.000Z`). */
  bucket: string;
  userId: string;
  keyId: string | null;
  model: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
}

export type UsageDimension = 'user' | 'key' | 'model' | 'day';

export interface UsageQuery {
  userId?: string;
  keyId?: string;
  model?: string;
  /** ISO time: hours starting at or after this time's hour. */
  since?: string;
  /** ISO time, exclusive: hours starting before it. */
  until?: string;
  groupBy: readonly UsageDimension[];
}

/** One group of usage; a dimension not grouped by is null (so is `keyId` for login sessions). */
export interface UsageTotals {
  userId: string | null;
  keyId: string | null;
  model: string | null;
  /** `YYYY-MM-DD` (UTC). */
  day: string | null;
  requests: number;
  promptTokens: number;
  completionTokens: number;
}

/** Usage accounting in hourly buckets; additions are batched by the caller. */
export interface UsageStore {
  /** Adds each delta to its bucket's totals, all or nothing. */
  addUsage(deltas: readonly UsageDelta[]): Promise<void>;
  queryUsage(query: UsageQuery): Promise<UsageTotals[]>;
}

/** Everything the server persists. SQLite is the embedded default; PostgreSQL the shared one. */
export interface Store extends UserStore, ApiKeyStore, RevocationStore, AuditStore, SettingsStore, JobStore, JobStatsStore, UsageStore, IdempotencyStore, SecretStore {
  /** Which backend this is, for readiness and logs. */
  readonly kind: 'sqlite' | 'postgres';
  /** Answers when the database answers a trivial query (readiness). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
  /**
   * Runs the credential lookups of one request (its key or token, then its user), letting them
   * share what checks that memory may answer them (credential-cache.ts: one count read, sent after
   * the request arrived, for both): everything inside is answered as of that check, so wrap only
   * one request's authentication in it. Absent where nothing is cached.
   */
  together?<T>(work: () => Promise<T>): Promise<T>;
}
