/**
 * The schema of `migrations.ts` in PostgreSQL's dialect, one entry per SQLite migration (same
 * numbering, so both stores are at the same version of the same schema). Applied in order and
 * recorded in `inferno_schema`. Append only: a released migration is never edited.
 *
 * Times stay ISO-8601 text as in SQLite (they compare in order); `*_seq` columns give the
 * insertion order SQLite's rowid gives.
 */
export const POSTGRES_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE users (
    id TEXT PRIMARY KEY,
    seq BIGSERIAL NOT NULL,
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT false,
    session_version INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );
  CREATE UNIQUE INDEX users_username ON users (lower(username));
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    seq BIGSERIAL NOT NULL,
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
    expires_at BIGINT NOT NULL
  );
  CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
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
    seq BIGSERIAL PRIMARY KEY,
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
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
  );
  CREATE INDEX idempotency_keys_expiry ON idempotency_keys(expires_at);
  CREATE INDEX idempotency_keys_scope ON idempotency_keys(scope, created_at);
  `,
  // Usage per hour, user, API key ('' for login sessions) and model (no foreign keys, as in SQLite).
  `
  CREATE TABLE usage (
    bucket TEXT NOT NULL,
    user_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    requests BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    PRIMARY KEY (bucket, user_id, key_id, model)
  );
  CREATE INDEX usage_user ON usage(user_id, bucket);
  CREATE INDEX usage_key ON usage(key_id, bucket);
  `,
  `
  ALTER TABLE jobs ADD COLUMN worker TEXT;
  ALTER TABLE jobs ADD COLUMN lease_until BIGINT;
  `,
  `
  CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
  `,
  // Twin of SQLite's: records from before responses were sealed (none on PostgreSQL, which came later).
  `
  DELETE FROM idempotency_keys;
  `,
  // Jobs on a queue engine (#13): the hand-written lease is gone (pg-boss's heartbeat replaced it);
  // the per-user cap counts a user's unfinished jobs.
  `
  ALTER TABLE jobs DROP COLUMN lease_until;
  CREATE INDEX jobs_user_status ON jobs(user_id, status);
  `,
  // Credentials changed, by any process (#12): a counter that every replica reads before it answers
  // a request's key, user or token lookup from memory (server/src/store/credential-cache.ts). The
  // triggers are deferred to commit, so a writer takes this row's lock last, when it holds nothing
  // else it still waits for (no deadlock with the row locks of users and keys), and the count moves
  // in the same commit as the change. Writes of last_used_at alone do not count. The schema is the
  // table's own, so an edit by hand from a session on another search_path counts too; so do a
  // TRUNCATE (which cannot be deferred, but holds its table exclusively already) and writes with
  // session_replication_role = replica (pg_restore --disable-triggers, logical replication): ALWAYS.
  `
  CREATE TABLE credentials_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
  );
  INSERT INTO credentials_version (id, version) VALUES (1, 0);
  CREATE FUNCTION credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    EXECUTE format('UPDATE %I.credentials_version SET version = version + 1 WHERE id = 1', TG_TABLE_SCHEMA);
    RETURN NULL;
  END
  $$;
  CREATE CONSTRAINT TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE ON users
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION credentials_changed();
  CREATE CONSTRAINT TRIGGER api_keys_changed AFTER UPDATE ON api_keys
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at'))
    EXECUTE FUNCTION credentials_changed();
  CREATE CONSTRAINT TRIGGER api_keys_deleted AFTER DELETE ON api_keys
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION credentials_changed();
  CREATE CONSTRAINT TRIGGER revoked_tokens_changed AFTER INSERT OR UPDATE OR DELETE ON revoked_tokens
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION credentials_changed();
  CREATE TRIGGER users_truncated AFTER TRUNCATE ON users FOR EACH STATEMENT EXECUTE FUNCTION credentials_changed();
  CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION credentials_changed();
  CREATE TRIGGER revoked_tokens_truncated AFTER TRUNCATE ON revoked_tokens FOR EACH STATEMENT EXECUTE FUNCTION credentials_changed();
  ALTER TABLE users ENABLE ALWAYS TRIGGER users_changed, ENABLE ALWAYS TRIGGER users_truncated;
  ALTER TABLE api_keys ENABLE ALWAYS TRIGGER api_keys_changed, ENABLE ALWAYS TRIGGER api_keys_deleted, ENABLE ALWAYS TRIGGER api_keys_truncated;
  ALTER TABLE revoked_tokens ENABLE ALWAYS TRIGGER revoked_tokens_changed, ENABLE ALWAYS TRIGGER revoked_tokens_truncated;
  `,
];
