/**
 * Schema migrations, applied in order and recorded in `PRAGMA user_version`.
 * Append only: a released migration is never edited.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    session_version INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    permissions TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    last_used_at TEXT,
    revoked_at TEXT
  );
  CREATE INDEX api_keys_user ON api_keys(user_id);
  CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
  );
  CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    actor_user_id TEXT,
    actor_key_id TEXT,
    target TEXT,
    ip TEXT,
    request_id TEXT,
    details TEXT
  );
  CREATE INDEX audit_log_time ON audit_log(time);
  CREATE INDEX audit_log_action ON audit_log(action);
  `,
  `
  CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );
  `,
  `
  CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT,
    status TEXT NOT NULL,
    requests TEXT NOT NULL,
    results TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
  );
  CREATE INDEX jobs_user ON jobs(user_id, seq);
  CREATE INDEX jobs_status ON jobs(status, seq);
  `,
  `
  ALTER TABLE api_keys ADD COLUMN rate_limit_per_minute INTEGER;
  `,
  `
  CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    status INTEGER,
    headers TEXT,
    body TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
  );
  CREATE INDEX idempotency_keys_expiry ON idempotency_keys(expires_at);
  CREATE INDEX idempotency_keys_scope ON idempotency_keys(scope, created_at);
  `,
  // Usage per hour, user, API key ('' for login sessions) and model. No foreign keys: the usage
  // of a deleted user or key stays accountable.
  `
  CREATE TABLE usage (
    bucket TEXT NOT NULL,
    user_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    PRIMARY KEY (bucket, user_id, key_id, model)
  );
  CREATE INDEX usage_user ON usage(user_id, bucket);
  CREATE INDEX usage_key ON usage(key_id, bucket);
  `,
  // Job leases (#13): the worker holding a running job, and until when (ms since the epoch).
  `
  ALTER TABLE jobs ADD COLUMN worker TEXT;
  ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
  `,
  // Secrets every replica must share (the JWT signing key when none is configured).
  `
  CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
  `,
  // Idempotency records written before they were sealed held responses in clear (created API key
  // secrets, generated text) under the raw key: forget them (a repeat of one runs again).
  `
  DELETE FROM idempotency_keys;
  `,
  // Jobs on a queue engine (#13): the hand-written lease is gone (pg-boss's heartbeat replaced it);
  // the per-user cap counts a user's unfinished jobs.
  `
  ALTER TABLE jobs DROP COLUMN lease_until;
  CREATE INDEX jobs_user_status ON jobs(user_id, status);
  `,
  // Twin of PostgreSQL's credentials counter, which SQLite does not need: its `data_version` already
  // tells this process that another one wrote the database.
  `
  SELECT 1;
  `,
];
