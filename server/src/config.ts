/**
 * Server configuration: defaults < TOML file < INFERNO_* environment < CLI flags.
 *
 * Every setting is declared once in SCHEMA; file keys, environment variable names, `--set` keys and
 * validation are all derived from it, so the three sources cannot drift apart.
 */
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { parse, TomlError } from 'smol-toml';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

/**
 * The resolved configuration. Keys mirror the TOML file, so `[rate_limit] requests_per_minute` is
 * `config.rate_limit.requests_per_minute`. Paths returned by loadConfig are absolute.
 */
export interface Config {
  server: {
    host: string;
    /** 0 asks the OS for an ephemeral port. */
    port: number;
    /** Origins allowed cross-origin access: [] allows none, '*' allows any. */
    cors_origins: string[];
    cors_methods: string[];
    cors_headers: string[];
    /** Take the client IP from X-Forwarded-For; only safe behind a reverse proxy that sets it. */
    trust_proxy: boolean;
    /** Open connections at most; beyond, a new connection is closed at once. */
    max_connections: number;
    /** Open connections per client address at most (0: no per-address cap, e.g. behind a proxy). */
    max_connections_per_address: number;
    /** A request's headers must arrive within this. */
    headers_timeout_seconds: number;
    /** A request body that sends nothing for this long is dropped (the connection is closed). */
    body_idle_timeout_seconds: number;
    /** The whole request (not the response) must arrive within this; it bounds the slowest upload. */
    request_timeout_seconds: number;
    /** An idle keep-alive connection is closed after this. */
    keep_alive_timeout_seconds: number;
    /** On SIGTERM or SIGINT, running generations get this long to finish before they are ended. */
    shutdown_grace_seconds: number;
    /** This replica's name in logs, metrics and job leases (default: host name and process id). */
    replica_id?: string;
    tls: {
      /** PEM files; HTTPS is served when both are set. */
      cert?: string;
      key?: string;
      min_version: TlsVersion;
    };
  };
  auth: {
    /** HMAC secret for issued tokens, at least 32 bytes. */
    jwt_secret?: string;
    token_ttl_seconds: number;
    admin_password?: string;
    login_max_failures: number;
    login_lockout_seconds: number;
    /** Failed logins from one client address (any usernames) before that address is locked out. */
    login_max_failures_per_address: number;
    /** Active (unrevoked, unexpired) API keys one user may hold. */
    max_keys_per_user: number;
  };
  rate_limit: {
    enabled: boolean;
    requests_per_minute: number;
    /** Length of the fixed window the budget counts over; 60 unless a short window suits (tests, bursty tools). */
    window_seconds: number;
  };
  /** Responses stored under an `Idempotency-Key`, per principal. */
  idempotency: { ttl_seconds: number; max_keys_per_principal: number; max_response_bytes: number };
  limits: {
    max_body_bytes: number;
    max_prompt_chars: number;
    /** Choices one completion request may ask for (`n`, times the prompts of a prompt list). */
    max_choices: number;
    /** Tools one request may define. */
    max_tools: number;
    /** JSON size of a `response_format` schema, and of a request's tools together. */
    max_schema_bytes: number;
  };
  models: { dir: string; max_loaded: number; max_upload_bytes: number };
  engine: {
    threads: number;
    /** Requests a loaded model serves at once (sequences in all). */
    parallel: number;
    /**
     * Sequences batched together in one llama.cpp context (default 4: with `parallel` 4, one
     * context, as llama-server's slots). 1: a context per sequence, sharing the weights.
     */
    sequences_per_context: number;
    context_size: number;
    max_queue: number;
    batch_size: number;
    /** llama.cpp's flash attention in generation contexts (measured faster on CPUs too). */
    flash_attention: boolean;
    /**
     * On a shared context, deterministic requests (a seed, or temperature 0) give exactly the text
     * they give alone: their prompts decode in steps of their own, their next tokens batch where
     * the context's check finds that batching changes no number (decode-loop.ts checkBatchShapes).
     */
    isolate_deterministic: boolean;
  };
  storage: {
    data_dir: string;
    /** `postgres://…`: users, keys, jobs, audit and settings in PostgreSQL instead of SQLite (shared by replicas). */
    database_url?: string;
    /** `redis://…`: rate-limit and login counters on Redis (shared by replicas). */
    redis_url?: string;
    /** PostgreSQL connections this replica keeps at most. */
    pool_size: number;
    /** Prefix of every Redis key this server writes (several deployments may share one Redis). */
    redis_key_prefix: string;
  };
  /**
   * Batch jobs. `max_active_per_user` caps a user's unfinished jobs (0: no cap), in both modes. The
   * rest applies to the shared mode (PostgreSQL), where pg-boss dispatches jobs to the replicas.
   */
  jobs: {
    max_active_per_user: number;
    /** A running job's replica heartbeats it; one not heard from for this long is resumed elsewhere. */
    heartbeat_seconds: number;
    /** How often the heartbeat is sent; a cancellation made on another replica stops the running request within it. */
    heartbeat_refresh_seconds: number;
    /** How often each replica looks for jobs whose heartbeat stopped (one replica per interval does the work). */
    supervise_interval_seconds: number;
    /** How often an idle replica asks for work when no notification woke it. */
    poll_interval_seconds: number;
    /** Attempts a job gets (a killed or stopped replica ends one); after the last it fails. */
    max_attempts: number;
    /** pg-boss's schema; by default `pgboss`, or `<schema>_pgboss` when the database URL selects a schema other than public. */
    queue_schema?: string;
  };
  /** `buffered`: lines batched (4 kB or 100 ms) off the request path; false writes each line at once (a kill -9 then loses none). */
  logging: { level: LogLevel; buffered: boolean };
  /** The response cache of deterministic native inference requests. */
  cache: { enabled: boolean; max_entries: number };
  /** Prometheus metrics: `enabled` false records nothing (and serves no metrics); `public` serves `/metrics` without credentials. */
  metrics: { enabled: boolean; public: boolean };
  /** Usage accounting per user, API key and model, written to the store in batches. */
  usage: { enabled: boolean; flush_interval_seconds: number };
  /** OpenTelemetry traces, exported over OTLP/HTTP when `otlp_endpoint` is set (off by default). */
  tracing: { otlp_endpoint?: string; service_name: string };
}

/** Defaults (frozen). Relative paths here are resolved against the working directory by loadConfig. */
export const DEFAULT_CONFIG: Config = deepFreeze({
  server: {
    host: '127.0.0.1',
    port: 8080,
    cors_origins: [],
    cors_methods: ['GET', 'POST', 'PATCH', 'DELETE'],
    cors_headers: ['Authorization', 'Content-Type', 'X-API-Key'],
    trust_proxy: false,
    max_connections: 4096,
    max_connections_per_address: 128,
    headers_timeout_seconds: 10,
    body_idle_timeout_seconds: 10,
    request_timeout_seconds: 300,
    keep_alive_timeout_seconds: 5,
    shutdown_grace_seconds: 30,
    tls: { min_version: 'TLSv1.2' },
  },
  auth: { token_ttl_seconds: 86_400, login_max_failures: 5, login_lockout_seconds: 300, login_max_failures_per_address: 30, max_keys_per_user: 50 },
  rate_limit: { enabled: true, requests_per_minute: 60, window_seconds: 60 },
  idempotency: { ttl_seconds: 86_400, max_keys_per_principal: 100, max_response_bytes: 262_144 },
  limits: { max_body_bytes: 10_485_760, max_prompt_chars: 10_000, max_choices: 16, max_tools: 64, max_schema_bytes: 65_536 },
  models: { dir: './models', max_loaded: 2, max_upload_bytes: 8_589_934_592 },
  engine: { threads: availableParallelism(), parallel: 4, sequences_per_context: 4, context_size: 2048, max_queue: 32, batch_size: 512, flash_attention: true, isolate_deterministic: true },
  storage: { data_dir: './data', pool_size: 10, redis_key_prefix: 'inferno' },
  jobs: { max_active_per_user: 10, heartbeat_seconds: 10, heartbeat_refresh_seconds: 1, supervise_interval_seconds: 2, poll_interval_seconds: 1, max_attempts: 10 },
  logging: { level: 'info', buffered: true },
  cache: { enabled: true, max_entries: 1000 },
  metrics: { enabled: true, public: false },
  usage: { enabled: true, flush_interval_seconds: 5 },
  tracing: { service_name: 'inferno' },
});

/** Thrown for any bad configuration; the message names the key and where the value came from. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

// ---- Schema -------------------------------------------------------------------------------------

type Kind =
  | { type: 'string' }
  | { type: 'secret'; minBytes: number } // optional, never echoed in errors
  | { type: 'dsn'; protocols: readonly string[] } // a connection URL; optional; shown with its password masked
  | { type: 'path'; optional: boolean }
  | { type: 'url'; optional: boolean } // http(s) only
  | { type: 'int'; min: number; max: number }
  | { type: 'bool' }
  | { type: 'list'; item: { test: (item: string) => boolean; expected: string } }
  | { type: 'enum'; values: readonly string[] };

type KindOf<T extends Kind['type']> = Extract<Kind, { type: T }>;

// Which kinds suit which value type, so the compiler rejects e.g. bool() for a number key.
type KindFor<T> = [T] extends [boolean]
  ? KindOf<'bool'>
  : [T] extends [number]
    ? KindOf<'int'>
    : [T] extends [string[]]
      ? KindOf<'list'>
      : [T] extends [string]
        ? string extends T
          ? KindOf<'string' | 'secret' | 'path' | 'url' | 'dsn'>
          : KindOf<'enum'> & { values: readonly T[] }
        : never;

type Sections = {
  server: Omit<Config['server'], 'tls'>;
  'server.tls': Config['server']['tls'];
  auth: Config['auth'];
  rate_limit: Config['rate_limit'];
  idempotency: Config['idempotency'];
  limits: Config['limits'];
  models: Config['models'];
  engine: Config['engine'];
  storage: Config['storage'];
  jobs: Config['jobs'];
  logging: Config['logging'];
  cache: Config['cache'];
  metrics: Config['metrics'];
  usage: Config['usage'];
  tracing: Config['tracing'];
};

// Every key of Config must appear here exactly once (the mapped type enforces it).
type Schema = { [S in keyof Sections]: { [K in keyof Sections[S]]-?: KindFor<NonNullable<Sections[S][K]>> } };

const text = (): KindOf<'string'> => ({ type: 'string' });
const secret = (minBytes: number): KindOf<'secret'> => ({ type: 'secret', minBytes });
const filePath = (optional = false): KindOf<'path'> => ({ type: 'path', optional });
const url = (optional = false): KindOf<'url'> => ({ type: 'url', optional });
const int = (min: number, max = Number.MAX_SAFE_INTEGER): KindOf<'int'> => ({ type: 'int', min, max });
const positive = (): KindOf<'int'> => int(1);
const bool = (): KindOf<'bool'> => ({ type: 'bool' });
const oneOf = <T extends string>(...values: T[]) => ({ type: 'enum' as const, values });
const dsn = (...protocols: string[]): KindOf<'dsn'> => ({ type: 'dsn', protocols });
const list = (test: (item: string) => boolean, expected: string): KindOf<'list'> => ({ type: 'list', item: { test, expected } });

// RFC 9110 token: catches "GET POST" written where a list was meant.
const httpTokens = () => list((item) => /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(item), 'an HTTP token');
// Browsers send Origin without a path or trailing slash; anything else would never match.
const origins = () =>
  list((item) => item === '*' || originOf(item) === item, '"*" or an origin like https://app.example (no path or trailing slash)');

const SCHEMA: Schema = {
  server: {
    host: text(),
    port: int(0, 65_535),
    cors_origins: origins(),
    cors_methods: httpTokens(),
    cors_headers: httpTokens(),
    trust_proxy: bool(),
    max_connections: int(1, 1_000_000),
    max_connections_per_address: int(0, 1_000_000),
    headers_timeout_seconds: int(1, 3600),
    body_idle_timeout_seconds: int(1, 3600),
    request_timeout_seconds: int(1, 86_400),
    keep_alive_timeout_seconds: int(1, 3600),
    shutdown_grace_seconds: int(0, 3600),
    replica_id: text(),
  },
  'server.tls': { cert: filePath(true), key: filePath(true), min_version: oneOf('TLSv1.2', 'TLSv1.3') },
  auth: {
    jwt_secret: secret(32),
    token_ttl_seconds: positive(),
    admin_password: secret(1),
    login_max_failures: positive(),
    login_lockout_seconds: positive(),
    login_max_failures_per_address: positive(),
    max_keys_per_user: int(1, 100_000),
  },
  rate_limit: { enabled: bool(), requests_per_minute: positive(), window_seconds: int(1, 3600) },
  idempotency: { ttl_seconds: int(60, 604_800), max_keys_per_principal: int(1, 1_000_000), max_response_bytes: int(0, 16_777_216) },
  limits: { max_body_bytes: positive(), max_prompt_chars: positive(), max_choices: int(1, 128), max_tools: int(1, 128), max_schema_bytes: int(256, 1_048_576) },
  models: { dir: filePath(), max_loaded: positive(), max_upload_bytes: positive() },
  engine: { threads: positive(), parallel: positive(), sequences_per_context: positive(), context_size: positive(), max_queue: positive(), batch_size: positive(), flash_attention: bool(), isolate_deterministic: bool() },
  storage: { data_dir: filePath(), database_url: dsn('postgres:', 'postgresql:'), redis_url: dsn('redis:', 'rediss:'), pool_size: int(1, 1000), redis_key_prefix: text() },
  jobs: {
    max_active_per_user: int(0, 1_000_000),
    // pg-boss's own floor: a heartbeat is expected at least every 10 s.
    heartbeat_seconds: int(10, 3600),
    heartbeat_refresh_seconds: int(1, 1800),
    supervise_interval_seconds: int(1, 3600),
    poll_interval_seconds: int(1, 3600),
    max_attempts: int(1, 1000),
    queue_schema: text(),
  },
  logging: { level: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'), buffered: bool() },
  cache: { enabled: bool(), max_entries: int(1, 1_000_000) },
  metrics: { enabled: bool(), public: bool() },
  usage: { enabled: bool(), flush_interval_seconds: int(1, 3600) },
  tracing: { otlp_endpoint: url(true), service_name: text() },
};

interface Field {
  section: string; // "server.tls"
  key: string; // "cert"
  id: string; // "server.tls.cert", as used by --set
  env: string; // "INFERNO_SERVER_TLS_CERT"
  kind: Kind;
}

const FIELDS: Field[] = Object.entries(SCHEMA as Record<string, Record<string, Kind>>).flatMap(([section, keys]) =>
  Object.entries(keys).map(([key, kind]) => ({
    section,
    key,
    id: `${section}.${key}`,
    env: `INFERNO_${section.replaceAll('.', '_')}_${key}`.toUpperCase(),
    kind,
  })),
);
const FIELD_BY_ID = new Map(FIELDS.map((f) => [f.id, f]));
const SECTION_NAMES = new Set(FIELDS.map((f) => f.section));

const CONFIG_ENV = 'INFERNO_CONFIG';
/**
 * Variables the project's docs and examples set for *clients* (the SDK, examples, benches). A shell
 * that has them exported must still start the server, so they are not server settings and not typos.
 */
export const CLIENT_ENV_VARS: ReadonlySet<string> = new Set(['INFERNO_URL', 'INFERNO_API_KEY', 'INFERNO_USER', 'INFERNO_PASSWORD']);
const ENV_ALIASES: Record<string, string> = {
  INFERNO_HOST: 'server.host',
  INFERNO_PORT: 'server.port',
  INFERNO_DATA_DIR: 'storage.data_dir',
  INFERNO_MODELS_DIR: 'models.dir',
  INFERNO_ADMIN_PASSWORD: 'auth.admin_password',
  INFERNO_JWT_SECRET: 'auth.jwt_secret',
  INFERNO_DATABASE_URL: 'storage.database_url',
  INFERNO_REDIS_URL: 'storage.redis_url',
  INFERNO_REPLICA_ID: 'server.replica_id',
};
const FLAG_ALIASES: Record<string, string> = {
  '--host': 'server.host',
  '--port': 'server.port',
  '--data-dir': 'storage.data_dir',
  '--models-dir': 'models.dir',
};
const FLAGS = new Set(['--config', '--set', ...Object.keys(FLAG_ALIASES)]);

// Built from the known keys, never by splitting on "_": INFERNO_SERVER_TLS_CERT is server.tls.cert.
const ENV_VARS = new Map<string, Field>();
for (const [name, id] of [...FIELDS.map((f) => [f.env, f.id] as const), ...Object.entries(ENV_ALIASES)]) {
  const field = fieldById(id);
  // An alias may coincide with the full name (INFERNO_MODELS_DIR), but never name another key.
  if ((ENV_VARS.get(name) ?? field) !== field || name === CONFIG_ENV || CLIENT_ENV_VARS.has(name)) throw new Error(`config schema: ${name} is ambiguous`);
  ENV_VARS.set(name, field);
}

// ---- Sources ------------------------------------------------------------------------------------

/** One raw value from one source, before validation. */
interface Setting {
  field: Field;
  raw: unknown;
  from: string; // file path, variable name or flag, for error messages
  textual: boolean; // env and flags give strings to convert; the file gives typed TOML values
  baseDir: string; // what relative paths are relative to
}

/** A `--set`-style override parsed from the command line. */
export interface ConfigOverride {
  /** Dotted key, e.g. "rate_limit.requests_per_minute". */
  key: string;
  value: string;
  /** The flag as written, for error messages: "--port" or "--set server.port". */
  flag: string;
}

export interface ConfigArgs {
  /** The `--config` path as given (relative to cwd). */
  config?: string;
  /** In command-line order; later ones win. */
  overrides: ConfigOverride[];
}

/** Parses the configuration flags; any other argument is a ConfigError. */
export function parseConfigArgs(argv: readonly string[]): ConfigArgs {
  const args: ConfigArgs = { overrides: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('-')) throw new ConfigError(`Unexpected argument ${JSON.stringify(arg)}`);
    const eq = arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    if (!FLAGS.has(flag)) throw new ConfigError(`Unknown flag ${flag}${suggest(flag, FLAGS)}`);
    let value: string;
    if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      const next = argv[++i];
      if (next === undefined || next.startsWith('--')) throw new ConfigError(`Missing value for ${flag}`);
      value = next;
    }

    if (flag === '--config') {
      if (value === '') throw new ConfigError('Missing value for --config');
      args.config = value;
    } else if (flag === '--set') {
      const sep = value.indexOf('=');
      // The value is not echoed: it may be a secret.
      if (sep === -1) throw new ConfigError('--set expects section.key=value, e.g. --set rate_limit.requests_per_minute=10');
      const key = value.slice(0, sep);
      if (!FIELD_BY_ID.has(key)) throw new ConfigError(`Unknown setting ${key} (from --set)${suggest(key, FIELD_BY_ID.keys())}`);
      args.overrides.push({ key, value: value.slice(sep + 1), flag: `--set ${key}` });
    } else {
      args.overrides.push({ key: FLAG_ALIASES[flag]!, value, flag });
    }
  }
  return args;
}

function envSettings(env: NodeJS.ProcessEnv, cwd: string): Setting[] {
  const byField = new Map<Field, { name: string; value: string }>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('INFERNO_') || name === CONFIG_ENV || CLIENT_ENV_VARS.has(name) || value === undefined) continue;
    const field = ENV_VARS.get(name);
    // A typo must not silently fall back to a default.
    if (!field) throw new ConfigError(`Unknown environment variable ${name}${suggest(name, [...ENV_VARS.keys(), CONFIG_ENV])}`);
    const other = byField.get(field);
    if (other && other.value !== value) {
      throw new ConfigError(`${other.name} and ${name} both set ${label(field)} to different values; set only one`);
    }
    byField.set(field, { name, value });
  }
  return [...byField].map(([field, { name, value }]) => ({ field, raw: value, from: name, textual: true, baseDir: cwd }));
}

/** --config, else INFERNO_CONFIG (both must exist), else ./inferno.toml when present. */
function locateConfigFile(flagPath: string | undefined, env: NodeJS.ProcessEnv, cwd: string): string | undefined {
  const envPath = env[CONFIG_ENV] || undefined; // empty means unset, as for other optional values
  const chosen = flagPath !== undefined ? { file: flagPath, from: '--config' } : envPath ? { file: envPath, from: CONFIG_ENV } : undefined;
  if (chosen) {
    const file = path.resolve(cwd, chosen.file);
    if (!existsSync(file)) throw new ConfigError(`Config file ${file} not found (from ${chosen.from})`);
    return file;
  }
  const fallback = path.join(cwd, 'inferno.toml');
  return existsSync(fallback) ? fallback : undefined;
}

function fileSettings(file: string): Setting[] {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`Cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parse(source, { unsafeKeyBehaviour: 'throw' });
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    // Only the first line: the rest is an excerpt of the file, which may hold a secret.
    const reason = err.message.split('\n', 1)[0]!.replace(/^Invalid TOML document: /, '');
    throw new ConfigError(`Invalid TOML in ${file} at line ${err.line}, column ${err.column}: ${reason}`);
  }

  const settings: Setting[] = [];
  const visit = (table: Record<string, unknown>, section: string | undefined): void => {
    for (const [key, raw] of Object.entries(table)) {
      const id = section === undefined ? key : `${section}.${key}`;
      // No real key contains a dot; a quoted one ("tls.cert" = ...) must not reach another section.
      const known = !key.includes('.');
      if (known && SECTION_NAMES.has(id)) {
        if (!isTable(raw)) throw new ConfigError(`[${id}] in ${file} must be a table`);
        visit(raw, id);
        continue;
      }
      const field = known ? FIELD_BY_ID.get(id) : undefined;
      if (section !== undefined && field) {
        settings.push({ field, raw, from: file, textual: false, baseDir: path.dirname(file) });
      } else if (isTable(raw)) {
        throw new ConfigError(`Unknown section [${id}] in ${file}${suggest(id, SECTION_NAMES)}`);
      } else if (section === undefined) {
        throw new ConfigError(`Unknown key ${key} at the top level of ${file}; settings belong under a [section]`);
      } else {
        const keys = FIELDS.filter((f) => f.section === section).map((f) => f.key);
        throw new ConfigError(`Unknown key [${section}] ${key} in ${file}${suggest(key, keys)}`);
      }
    }
  };
  visit(doc, undefined);
  return settings;
}

// ---- Loading ------------------------------------------------------------------------------------

export interface LoadConfigOptions {
  /** Configuration flags only (the CLI strips its subcommand first); default none. */
  argv?: string[];
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Default process.cwd(). */
  cwd?: string;
}

/** Loads and validates the configuration; throws ConfigError on any problem. */
export function loadConfig(opts: LoadConfigOptions = {}): Config {
  const { argv = [], env = process.env } = opts;
  const cwd = path.resolve(opts.cwd ?? process.cwd());

  // Cheap checks first, so a typo in a flag or variable is reported before the file is read.
  const args = parseConfigArgs(argv);
  const fromEnv = envSettings(env, cwd);
  const file = locateConfigFile(args.config, env, cwd);
  const fromFlags = args.overrides.map(
    ({ key, value, flag }): Setting => ({ field: fieldById(key), raw: value, from: flag, textual: true, baseDir: cwd }),
  );

  const config = structuredClone(DEFAULT_CONFIG);
  config.models.dir = path.resolve(cwd, config.models.dir);
  config.storage.data_dir = path.resolve(cwd, config.storage.data_dir);

  const origins = new Map<string, string>(); // key id -> source, for cross-key errors
  for (const setting of [...(file ? fileSettings(file) : []), ...fromEnv, ...fromFlags]) {
    assign(config, setting);
    origins.set(setting.field.id, setting.from);
  }

  const { cert, key } = config.server.tls;
  if ((cert === undefined) !== (key === undefined)) {
    const [given, missing] = cert !== undefined ? ['cert', 'key'] : ['key', 'cert'];
    throw new ConfigError(
      `[server.tls] cert and key must be set together: ${given} is set (from ${origins.get(`server.tls.${given}`)}) but ${missing} is not`,
    );
  }
  const { heartbeat_seconds: heartbeat, heartbeat_refresh_seconds: refresh } = config.jobs;
  if (refresh >= heartbeat) {
    const from = (id: string) => origins.get(`jobs.${id}`) ?? 'the default';
    throw new ConfigError(
      `[jobs] heartbeat_refresh_seconds (${refresh}, from ${from('heartbeat_refresh_seconds')}) must be less than [jobs] heartbeat_seconds (${heartbeat}, from ${from('heartbeat_seconds')})`,
    );
  }
  return config;
}

/** The configuration with secrets masked ("(set)" or null), safe to log or serve over the API. */
export function describeConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of FIELDS) {
    const value = sectionOf(config, field.section)[field.key];
    sectionOf(out, field.section, true)[field.key] =
      field.kind.type === 'secret'
        ? value === undefined ? null : '(set)'
        : field.kind.type === 'dsn' && typeof value === 'string'
          ? redactUrl(value)
          : structuredClone(value ?? null);
  }
  return out;
}

function assign(config: Config, setting: Setting): void {
  const value = convert(setting);
  const section = sectionOf(config, setting.field.section);
  if (value === undefined) delete section[setting.field.key];
  else section[setting.field.key] = value;
}

/** Validates one raw value; undefined means "unset" (an empty variable clears an optional value). */
function convert({ field, raw, from, textual, baseDir }: Setting): unknown {
  const { kind } = field;
  const invalid = (expected: string, got: unknown = raw) =>
    new ConfigError(
      `Invalid value for ${label(field)} (from ${from}): ${expected}${kind.type === 'secret' ? '' : `, got ${show(kind.type === 'dsn' && typeof got === 'string' ? redactUrl(got) : got)}`}`,
    );

  if (textual && raw === '') {
    if (kind.type === 'list') return [];
    if (kind.type === 'secret' || kind.type === 'dsn' || ((kind.type === 'path' || kind.type === 'url') && kind.optional)) return undefined;
  }
  switch (kind.type) {
    case 'string':
      if (typeof raw !== 'string' || raw === '') throw invalid('expected a non-empty string');
      return raw;
    case 'secret':
      if (typeof raw !== 'string') throw invalid('expected a string');
      if (Buffer.byteLength(raw) < kind.minBytes) {
        throw invalid(kind.minBytes === 1 ? 'must not be empty' : `must be at least ${kind.minBytes} bytes`);
      }
      return raw;
    case 'dsn': {
      if (typeof raw !== 'string') throw invalid('expected a URL');
      let parsed: URL;
      try {
        parsed = new URL(raw);
      } catch {
        throw invalid(`expected a URL like ${kind.protocols[0]}//host:port/…`);
      }
      if (!kind.protocols.includes(parsed.protocol)) throw invalid(`expected a ${kind.protocols.join(' or ')}// URL`);
      return raw;
    }
    case 'path':
      if (typeof raw !== 'string' || raw === '') throw invalid('expected a non-empty path');
      return path.resolve(baseDir, raw);
    case 'url': {
      const parsed = typeof raw === 'string' ? parseUrl(raw) : undefined;
      if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) throw invalid('expected an http:// or https:// URL');
      // The value is shown by GET /api/v1/config: it must not carry credentials.
      if (parsed.username || parsed.password) throw invalid('must not contain a user name or password', `${parsed.protocol}//…@${parsed.host}`);
      return raw;
    }
    case 'int': {
      const n = textual && typeof raw === 'string' && /^-?\d+$/.test(raw) ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < kind.min || n > kind.max) throw invalid(describeInt(kind));
      return n;
    }
    case 'bool': {
      const b = textual && typeof raw === 'string' ? BOOL_WORDS.get(raw.toLowerCase()) : raw;
      if (typeof b !== 'boolean') throw invalid(textual ? 'expected true, false, 1 or 0' : 'expected true or false');
      return b;
    }
    case 'list': {
      const items = textual && typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter((s) => s !== '') : raw;
      if (!Array.isArray(items) || !items.every((i) => typeof i === 'string' && i !== '')) {
        throw invalid(textual ? 'expected a comma-separated list' : 'expected an array of non-empty strings');
      }
      const bad = (items as string[]).find((item) => !kind.item.test(item));
      if (bad !== undefined) throw invalid(`each entry must be ${kind.item.expected}`, bad);
      return items;
    }
    case 'enum':
      if (typeof raw !== 'string' || !kind.values.includes(raw)) throw invalid(`expected one of ${kind.values.join(', ')}`);
      return raw;
  }
}

// ---- Helpers ------------------------------------------------------------------------------------

/** A connection URL with its password masked: `postgres://app:***@db:5432/inferno`. */
export function redactUrl(value: string): string {
  try {
    const parsed = new URL(value);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparsable URL)';
  }
}

const BOOL_WORDS = new Map([
  ['true', true],
  ['1', true],
  ['false', false],
  ['0', false],
]);

function describeInt({ min, max }: KindOf<'int'>): string {
  if (max !== Number.MAX_SAFE_INTEGER) return `expected an integer from ${min} to ${max}`;
  return min === 1 ? 'expected a positive integer' : `expected an integer of at least ${min}`;
}

/** "[server.tls] cert": how the key is written in the file. */
function label(field: Field): string {
  return `[${field.section}] ${field.key}`;
}

function show(value: unknown): string {
  const json = JSON.stringify(value) ?? String(value);
  return json.length > 80 ? `${json.slice(0, 77)}...` : json;
}

function fieldById(id: string): Field {
  const field = FIELD_BY_ID.get(id);
  if (!field) throw new Error(`config schema: no setting ${id}`);
  return field;
}

/** The object holding a section's keys, e.g. config.server.tls for "server.tls". */
function sectionOf(root: object, section: string, create = false): Record<string, unknown> {
  let node = root as Record<string, unknown>;
  for (const part of section.split('.')) {
    if (create) node[part] ??= {};
    node = node[part] as Record<string, unknown>;
  }
  return node;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function parseUrl(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

function originOf(value: string): string | undefined {
  try {
    return new URL(value).origin;
  } catch {
    return undefined;
  }
}

/** "; did you mean X?" for a near miss, so typos are quick to fix. */
function suggest(word: string, candidates: Iterable<string>): string {
  let best: string | undefined;
  let bestDistance = 3; // at most two edits away
  for (const candidate of candidates) {
    const distance = editDistance(word, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best === undefined ? '' : `; did you mean ${best}?`;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length]!;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    Object.values(value).forEach(deepFreeze);
    Object.freeze(value);
  }
  return value;
}
