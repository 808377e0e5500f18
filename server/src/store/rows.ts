import type { Permission, Role } from '../gen/types.gen.js';
import type { ApiKeyRecord, AuditRecord, IdempotencyRecord, JobRecord, JobResult, UserRecord } from './types.js';

/**
 * A row as either store's driver reads it (node:sqlite, pg): the same columns, the same text for
 * times and JSON; only booleans differ (SQLite's 0/1, PostgreSQL's own).
 */
export type Row = Record<string, unknown>;

export const now = () => new Date().toISOString();

/** A nullable column as text. */
const text = (value: unknown) => (value == null ? null : String(value));

/** The start of the hour a time falls in, as usage buckets are named. */
export const hourOf = (time: string) => new Date(Math.floor(Date.parse(time) / 3_600_000) * 3_600_000).toISOString();

export const isUnfinished = (r: JobResult) => r.status === 'queued' || r.status === 'running';

export function toUser(row: Row): UserRecord {
  return {
    id: String(row.id),
    username: String(row.username),
    passwordHash: String(row.password_hash),
    role: row.role as Role,
    disabled: row.disabled === true || row.disabled === 1,
    sessionVersion: Number(row.session_version),
    createdAt: String(row.created_at),
    updatedAt: String(row.updated_at),
  };
}

export function toApiKey(row: Row): ApiKeyRecord {
  return {
    id: String(row.id),
    userId: String(row.user_id),
    name: String(row.name),
    prefix: String(row.prefix),
    keyHash: String(row.key_hash),
    permissions: JSON.parse(String(row.permissions)) as Permission[],
    rateLimitPerMinute: row.rate_limit_per_minute == null ? null : Number(row.rate_limit_per_minute),
    createdAt: String(row.created_at),
    expiresAt: text(row.expires_at),
    lastUsedAt: text(row.last_used_at),
    revokedAt: text(row.revoked_at),
  };
}

export function toAudit(row: Row): AuditRecord {
  return {
    id: Number(row.id),
    time: String(row.time),
    action: String(row.action),
    outcome: row.outcome as AuditRecord['outcome'],
    actorUserId: text(row.actor_user_id),
    actorKeyId: text(row.actor_key_id),
    target: text(row.target),
    ip: text(row.ip),
    requestId: text(row.request_id),
    details: row.details == null ? null : (JSON.parse(String(row.details)) as Record<string, unknown>),
  };
}

export function toJob(row: Row): JobRecord {
  return {
    id: String(row.id),
    seq: Number(row.seq),
    userId: String(row.user_id),
    name: text(row.name),
    status: row.status as JobRecord['status'],
    requests: JSON.parse(String(row.requests)) as JobRecord['requests'],
    results: JSON.parse(String(row.results)) as JobResult[],
    createdAt: String(row.created_at),
    startedAt: text(row.started_at),
    finishedAt: text(row.finished_at),
  };
}

export function toIdempotency(row: Row): IdempotencyRecord {
  const complete = row.state === 'complete';
  return {
    fingerprint: String(row.fingerprint),
    state: complete ? 'complete' : 'pending',
    response: complete ? { status: Number(row.status), headers: JSON.parse(String(row.headers)) as Record<string, string>, body: String(row.body) } : undefined,
    expiresAt: Number(row.expires_at),
  };
}
