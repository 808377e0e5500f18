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
  countUsers(): number;
  createUser(user: { username: string; passwordHash: string; role: Role }): UserRecord;
  getUser(id: string): UserRecord | undefined;
  getUserByUsername(username: string): UserRecord | undefined;
  listUsers(): UserRecord[];
  updateUser(id: string, changes: Partial<Pick<UserRecord, 'passwordHash' | 'role' | 'disabled' | 'sessionVersion'>>): UserRecord | undefined;
  deleteUser(id: string): boolean;
}

export interface ApiKeyStore {
  createApiKey(key: Omit<ApiKeyRecord, 'id' | 'createdAt' | 'lastUsedAt' | 'revokedAt'>): ApiKeyRecord;
  getApiKey(id: string): ApiKeyRecord | undefined;
  findApiKeyByHash(keyHash: string): ApiKeyRecord | undefined;
  listApiKeys(userId: string): ApiKeyRecord[];
  revokeApiKey(id: string): boolean;
  touchApiKey(id: string, at: string): void;
}

/** Revoked JWT ids, kept until the token would have expired anyway. */
export interface RevocationStore {
  revokeToken(jti: string, expiresAtMs: number): void;
  isTokenRevoked(jti: string): boolean;
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
  recordAudit(event: AuditEvent): void;
  listAudit(filter?: AuditFilter): AuditRecord[];
}

/** Runtime settings changed through the API, persisted as `section.key` → JSON value. */
export interface SettingsStore {
  getSettings(): Record<string, unknown>;
  putSettings(settings: Record<string, unknown>): void;
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

/** Batch jobs and their results. A worker takes queued jobs in order (`claimNextJob`). */
export interface JobStore {
  createJob(job: { userId: string; name: string | null; requests: InferenceRequest[] }): JobRecord;
  getJob(id: string): JobRecord | undefined;
  listJobs(filter?: JobFilter): JobRecord[];
  /** Marks the oldest queued job running and returns it; undefined when none is queued. */
  claimNextJob(): JobRecord | undefined;
  /** Saves a running job's progress; false when it is no longer running (cancelled or deleted). */
  saveJobResults(id: string, results: JobResult[]): boolean;
  /** Ends a running job; false when it is no longer running. */
  finishJob(id: string, status: 'succeeded' | 'failed', results: JobResult[]): boolean;
  /**
   * Cancels a queued or running job: requests not finished become `cancelled`. Answers the job as
   * it is afterwards and whether this call cancelled it (false: it had already finished).
   */
  cancelJob(id: string): { job: JobRecord; cancelled: boolean } | undefined;
  /** Puts running jobs back in the queue (their unfinished requests too); answers how many. */
  requeueRunningJobs(): number;
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

/** Everything the server persists. SQLite is the embedded default; other backends fit behind this. */
export interface Store extends UserStore, ApiKeyStore, RevocationStore, AuditStore, SettingsStore, JobStore, JobStatsStore, UsageStore, IdempotencyStore {
  close(): void;
}
