import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_CONFIG, describeConfig, loadConfig, parseConfigArgs, type Config } from '../src/config.js';

const SECRET = 'correct-horse-battery-staple-0123456789';

let cwd: string;
beforeEach(() => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'inferno-config-'));
});
afterEach(() => {
  fs.rmSync(cwd, { recursive: true, force: true });
});

function writeFile(relative: string, text: string): string {
  const file = path.join(cwd, relative);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

/** Loads with an explicit env (never process.env) and the temp dir as cwd. */
function load(opts: { argv?: string[]; env?: Record<string, string> } = {}): Config {
  return loadConfig({ argv: opts.argv ?? [], env: opts.env ?? {}, cwd });
}

/** The ConfigError message thrown by load(). */
function loadError(opts: { argv?: string[]; env?: Record<string, string> } = {}): string {
  try {
    load(opts);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message;
  }
  throw new Error('expected loadConfig to throw');
}

describe('defaults', () => {
  it('uses the documented defaults with paths resolved against cwd', () => {
    const config = load();
    expect(config.server).toEqual({
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
    });
    expect(config.auth).toEqual({ token_ttl_seconds: 86400, login_max_failures: 5, login_lockout_seconds: 300, login_max_failures_per_address: 30, max_keys_per_user: 50 });
    expect(config.rate_limit).toEqual({ enabled: true, requests_per_minute: 60, window_seconds: 60 });
    expect(config.idempotency).toEqual({ ttl_seconds: 86_400, max_keys_per_principal: 100, max_response_bytes: 262_144 });
    expect(config.limits).toEqual({ max_body_bytes: 10485760, max_prompt_chars: 10000, max_choices: 16, max_tools: 64, max_schema_bytes: 65536 });
    expect(config.models).toEqual({ dir: path.join(cwd, 'models'), max_loaded: 2, max_upload_bytes: 8589934592 });
    expect(config.engine).toEqual({ threads: os.availableParallelism(), parallel: 4, sequences_per_context: 4, context_size: 2048, max_queue: 32, batch_size: 512, flash_attention: true, isolate_deterministic: true });
    expect(config.storage).toEqual({ data_dir: path.join(cwd, 'data'), pool_size: 10, redis_key_prefix: 'inferno' });
    expect(config.logging).toEqual({ level: 'info', buffered: true });
  });

  it('returns a fresh object each time and keeps DEFAULT_CONFIG frozen', () => {
    const a = load();
    a.server.cors_origins.push('https://x.example');
    expect(load().server.cors_origins).toEqual([]);
    expect(Object.isFrozen(DEFAULT_CONFIG.server.cors_methods)).toBe(true);
    expect(DEFAULT_CONFIG.models.dir).toBe('./models');
  });
});

describe('config file', () => {
  const FULL = `
[server]
host = "0.0.0.0"
port = 9000
cors_origins = ["https://a.example", "*"]
cors_methods = ["GET"]
cors_headers = ["Authorization"]
trust_proxy = true

[server.tls]
cert = "tls/cert.pem"
key = "/etc/inferno/key.pem"
min_version = "TLSv1.3"

[auth]
jwt_secret = "${SECRET}"
token_ttl_seconds = 3600
admin_password = "hunter2"
login_max_failures = 3
login_lockout_seconds = 60

[rate_limit]
enabled = false
requests_per_minute = 10

[limits]
max_body_bytes = 1024
max_prompt_chars = 500

[models]
dir = "m"
max_loaded = 1
max_upload_bytes = 1_000_000

[engine]
threads = 8
parallel = 2
context_size = 4096
max_queue = 16
batch_size = 256

[storage]
data_dir = "../state"

[logging]
level = "debug"
`;

  it('reads inferno.toml from cwd when present', () => {
    writeFile('inferno.toml', FULL);
    const config = load();
    expect(config.server).toEqual({
      host: '0.0.0.0',
      port: 9000,
      cors_origins: ['https://a.example', '*'],
      cors_methods: ['GET'],
      cors_headers: ['Authorization'],
      trust_proxy: true,
      max_connections: 4096,
      max_connections_per_address: 128,
      headers_timeout_seconds: 10,
      body_idle_timeout_seconds: 10,
      request_timeout_seconds: 300,
      keep_alive_timeout_seconds: 5,
      shutdown_grace_seconds: 30,
      tls: { cert: path.join(cwd, 'tls/cert.pem'), key: '/etc/inferno/key.pem', min_version: 'TLSv1.3' },
    });
    expect(config.auth).toEqual({
      jwt_secret: SECRET,
      token_ttl_seconds: 3600,
      admin_password: 'hunter2',
      login_max_failures: 3,
      login_lockout_seconds: 60,
      login_max_failures_per_address: 30,
      max_keys_per_user: 50,
    });
    expect(config.rate_limit).toEqual({ enabled: false, requests_per_minute: 10, window_seconds: 60 });
    expect(config.limits).toMatchObject({ max_body_bytes: 1024, max_prompt_chars: 500 });
    expect(config.models).toEqual({ dir: path.join(cwd, 'm'), max_loaded: 1, max_upload_bytes: 1_000_000 });
    expect(config.engine).toEqual({ threads: 8, parallel: 2, sequences_per_context: 4, context_size: 4096, max_queue: 16, batch_size: 256, flash_attention: true, isolate_deterministic: true });
    expect(config.logging.level).toBe('debug');
  });

  it('resolves file paths against the config file directory, not cwd', () => {
    const file = writeFile('etc/inferno/server.toml', '[storage]\ndata_dir = "data"\n[models]\ndir = "../models"\n');
    const config = load({ env: { INFERNO_CONFIG: file } });
    expect(config.storage.data_dir).toBe(path.join(cwd, 'etc/inferno/data'));
    expect(config.models.dir).toBe(path.join(cwd, 'etc/models'));
  });

  it('takes INFERNO_CONFIG relative to cwd and prefers it over ./inferno.toml', () => {
    writeFile('inferno.toml', '[server]\nport = 1\n');
    writeFile('conf/other.toml', '[server]\nport = 2\n');
    expect(load({ env: { INFERNO_CONFIG: 'conf/other.toml' } }).server.port).toBe(2);
  });

  it('prefers --config over INFERNO_CONFIG', () => {
    writeFile('a.toml', '[server]\nport = 1\n');
    writeFile('b.toml', '[server]\nport = 2\n');
    expect(load({ env: { INFERNO_CONFIG: 'a.toml' }, argv: ['--config', 'b.toml'] }).server.port).toBe(2);
    expect(load({ argv: ['--config=a.toml'] }).server.port).toBe(1);
  });

  it('fails when INFERNO_CONFIG or --config names a missing file', () => {
    const missing = path.join(cwd, 'nope.toml');
    expect(loadError({ env: { INFERNO_CONFIG: missing } })).toBe(`Config file ${missing} not found (from INFERNO_CONFIG)`);
    expect(loadError({ argv: ['--config', 'nope.toml'] })).toBe(`Config file ${missing} not found (from --config)`);
  });

  it('reports TOML syntax errors with file and line, without the excerpt', () => {
    const file = writeFile('inferno.toml', `[auth]\njwt_secret = "${SECRET}\n`);
    const message = loadError();
    expect(message).toMatch(new RegExp(`^Invalid TOML in ${escape(file)} at line 2, column \\d+: `));
    expect(message).not.toContain(SECRET);
  });

  it('rejects unknown sections and keys, naming them and the file', () => {
    const file = writeFile('inferno.toml', '[rate_limit]\nrequests_per_minut = 5\n');
    expect(loadError()).toBe(
      `Unknown key [rate_limit] requests_per_minut in ${file}; did you mean requests_per_minute?`,
    );
    writeFile('inferno.toml', '[srever]\nport = 1\n');
    expect(loadError()).toBe(`Unknown section [srever] in ${file}; did you mean server?`);
    writeFile('inferno.toml', '[server.tls]\ncertificate = "x"\n');
    expect(loadError()).toMatch(/^Unknown key \[server\.tls\] certificate in /);
    writeFile('inferno.toml', 'port = 1\n');
    expect(loadError()).toMatch(/^Unknown key port at the top level of /);
    // A quoted dotted key must not sneak into another section.
    writeFile('inferno.toml', '[server]\n"tls.cert" = "x"\n');
    expect(loadError()).toMatch(/^Unknown key \[server\] tls\.cert in /);
    writeFile('inferno.toml', '"server.port" = 1\n');
    expect(loadError()).toMatch(/^Unknown key server\.port at the top level of /);
  });

  it('rejects wrong types and out-of-range values, naming key and file', () => {
    const file = writeFile('inferno.toml', '[server]\nport = 70000\n');
    expect(loadError()).toBe(
      `Invalid value for [server] port (from ${file}): expected an integer from 0 to 65535, got 70000`,
    );
    writeFile('inferno.toml', '[engine]\nthreads = "4"\n');
    expect(loadError()).toBe(`Invalid value for [engine] threads (from ${file}): expected a positive integer, got "4"`);
    writeFile('inferno.toml', '[rate_limit]\nenabled = "yes"\n');
    expect(loadError()).toMatch(/^Invalid value for \[rate_limit\] enabled .*expected true or false, got "yes"$/);
    writeFile('inferno.toml', '[logging]\nlevel = "verbose"\n');
    expect(loadError()).toMatch(/^Invalid value for \[logging\] level .*expected one of fatal, error, warn, info, debug, trace, silent/);
    writeFile('inferno.toml', '[server]\ncors_origins = "https://a.example"\n');
    expect(loadError()).toMatch(/^Invalid value for \[server\] cors_origins .*expected an array of non-empty strings/);
    writeFile('inferno.toml', '[server]\ntls = 1\n');
    expect(loadError()).toBe(`[server.tls] in ${file} must be a table`);
  });

  it('allows port 0 for an ephemeral port', () => {
    writeFile('inferno.toml', '[server]\nport = 0\n');
    expect(load().server.port).toBe(0);
  });
});

describe('environment', () => {
  it('overrides the file', () => {
    writeFile('inferno.toml', '[server]\nport = 9000\nhost = "0.0.0.0"\n[engine]\nthreads = 2\n');
    const config = load({ env: { INFERNO_SERVER_PORT: '9100', INFERNO_ENGINE_THREADS: '6' } });
    expect(config.server.port).toBe(9100);
    expect(config.server.host).toBe('0.0.0.0');
    expect(config.engine.threads).toBe(6);
  });

  it('maps every alias', () => {
    const config = load({
      env: {
        INFERNO_HOST: '::',
        INFERNO_PORT: '0',
        INFERNO_DATA_DIR: 'var/data',
        INFERNO_MODELS_DIR: '/srv/models',
        INFERNO_ADMIN_PASSWORD: 'pw',
        INFERNO_JWT_SECRET: SECRET,
      },
    });
    expect(config.server.host).toBe('::');
    expect(config.server.port).toBe(0);
    expect(config.storage.data_dir).toBe(path.join(cwd, 'var/data'));
    expect(config.models.dir).toBe('/srv/models');
    expect(config.auth.admin_password).toBe('pw');
    expect(config.auth.jwt_secret).toBe(SECRET);
  });

  it('maps nested sections without splitting on underscores', () => {
    const config = load({
      env: {
        INFERNO_SERVER_TLS_CERT: 'c.pem',
        INFERNO_SERVER_TLS_KEY: 'k.pem',
        INFERNO_SERVER_TLS_MIN_VERSION: 'TLSv1.3',
        INFERNO_RATE_LIMIT_REQUESTS_PER_MINUTE: '5',
      },
    });
    expect(config.server.tls).toEqual({ cert: path.join(cwd, 'c.pem'), key: path.join(cwd, 'k.pem'), min_version: 'TLSv1.3' });
    expect(config.rate_limit.requests_per_minute).toBe(5);
  });

  it('parses comma-separated lists', () => {
    const config = load({ env: { INFERNO_SERVER_CORS_ORIGINS: 'https://a.example, https://b.example:8443,' } });
    expect(config.server.cors_origins).toEqual(['https://a.example', 'https://b.example:8443']);
    writeFile('inferno.toml', '[server]\ncors_origins = ["*"]\n');
    expect(load({ env: { INFERNO_SERVER_CORS_ORIGINS: '' } }).server.cors_origins).toEqual([]);
  });

  it('parses booleans as true/false/1/0', () => {
    for (const [raw, expected] of [['true', true], ['1', true], ['false', false], ['0', false], ['TRUE', true]] as const) {
      expect(load({ env: { INFERNO_SERVER_TRUST_PROXY: raw } }).server.trust_proxy).toBe(expected);
    }
    expect(loadError({ env: { INFERNO_RATE_LIMIT_ENABLED: 'yes' } })).toBe(
      'Invalid value for [rate_limit] enabled (from INFERNO_RATE_LIMIT_ENABLED): expected true, false, 1 or 0, got "yes"',
    );
  });

  it('names the variable in validation errors', () => {
    expect(loadError({ env: { INFERNO_RATE_LIMIT_REQUESTS_PER_MINUTE: 'abc' } })).toBe(
      'Invalid value for [rate_limit] requests_per_minute (from INFERNO_RATE_LIMIT_REQUESTS_PER_MINUTE): expected a positive integer, got "abc"',
    );
    expect(loadError({ env: { INFERNO_PORT: '-1' } })).toBe(
      'Invalid value for [server] port (from INFERNO_PORT): expected an integer from 0 to 65535, got "-1"',
    );
    expect(loadError({ env: { INFERNO_ENGINE_THREADS: '0' } })).toMatch(/\[engine\] threads \(from INFERNO_ENGINE_THREADS\)/);
    expect(loadError({ env: { INFERNO_SERVER_CORS_METHODS: 'GET POST' } })).toMatch(
      /\[server\] cors_methods .*each entry must be an HTTP token, got "GET POST"$/,
    );
    expect(loadError({ env: { INFERNO_SERVER_CORS_ORIGINS: 'https://a.example/' } })).toMatch(
      /\[server\] cors_origins \(from INFERNO_SERVER_CORS_ORIGINS\): each entry must be "\*" or an origin/,
    );
  });

  it('rejects unknown INFERNO_* variables and ignores others', () => {
    expect(loadError({ env: { INFERNO_RATE_LIMT_ENABLED: 'true' } })).toBe(
      'Unknown environment variable INFERNO_RATE_LIMT_ENABLED; did you mean INFERNO_RATE_LIMIT_ENABLED?',
    );
    expect(loadError({ env: { INFERNO_SERVER_TLS_CERTIFICATE_CHAIN: 'x' } })).toBe(
      'Unknown environment variable INFERNO_SERVER_TLS_CERTIFICATE_CHAIN',
    );
    expect(load({ env: { PORT: '1', HOME: '/root' } }).server.port).toBe(8080);
  });

  it('accepts the variables the docs and examples set for clients, and still catches near misses of server ones', () => {
    const env = { INFERNO_URL: 'http://127.0.0.1:8080', INFERNO_API_KEY: 'inf_x', INFERNO_PASSWORD: 'p', INFERNO_USER: 'admin' };
    expect(load({ env }).server.port).toBe(8080);
    expect(loadError({ env: { ...env, INFERNO_PROT: '1' } })).toBe('Unknown environment variable INFERNO_PROT; did you mean INFERNO_PORT?');
  });

  it('rejects an alias and a full name that disagree', () => {
    expect(loadError({ env: { INFERNO_PORT: '1', INFERNO_SERVER_PORT: '2' } })).toMatch(
      /^INFERNO_(SERVER_)?PORT and INFERNO_(SERVER_)?PORT both set \[server\] port to different values/,
    );
    expect(load({ env: { INFERNO_PORT: '1', INFERNO_SERVER_PORT: '1' } }).server.port).toBe(1);
  });

  it('unsets an optional value with an empty variable', () => {
    writeFile('inferno.toml', `[auth]\njwt_secret = "${SECRET}"\n`);
    expect(load({ env: { INFERNO_JWT_SECRET: '' } }).auth.jwt_secret).toBeUndefined();
    expect(loadError({ env: { INFERNO_HOST: '' } })).toMatch(/\[server\] host \(from INFERNO_HOST\): expected a non-empty string/);
  });
});

describe('flags', () => {
  it('override the environment', () => {
    const config = load({
      env: { INFERNO_PORT: '9100', INFERNO_HOST: '0.0.0.0', INFERNO_RATE_LIMIT_REQUESTS_PER_MINUTE: '5' },
      argv: ['--port', '9200', '--host=::1', '--set', 'rate_limit.requests_per_minute=10'],
    });
    expect(config.server.port).toBe(9200);
    expect(config.server.host).toBe('::1');
    expect(config.rate_limit.requests_per_minute).toBe(10);
  });

  it('support the directory aliases and --set for nested keys, relative to cwd', () => {
    writeFile('conf/inferno.toml', '[storage]\ndata_dir = "from-file"\n');
    const config = load({
      argv: [
        '--config', 'conf/inferno.toml',
        '--data-dir', 'd',
        '--models-dir=/abs/models',
        '--set', 'server.tls.cert=/x.pem',
        '--set=server.tls.key=key.pem',
        '--set', 'server.cors_origins=https://a.example,https://b.example',
      ],
    });
    expect(config.storage.data_dir).toBe(path.join(cwd, 'd'));
    expect(config.models.dir).toBe('/abs/models');
    expect(config.server.tls.cert).toBe('/x.pem');
    expect(config.server.tls.key).toBe(path.join(cwd, 'key.pem'));
    expect(config.server.cors_origins).toEqual(['https://a.example', 'https://b.example']);
  });

  it('let the last occurrence win', () => {
    expect(load({ argv: ['--port', '1', '--set', 'server.port=2'] }).server.port).toBe(2);
  });

  it('reject unknown flags, unknown settings and missing values', () => {
    expect(loadError({ argv: ['--prot', '1'] })).toBe('Unknown flag --prot; did you mean --port?');
    expect(loadError({ argv: ['--verbose'] })).toBe('Unknown flag --verbose');
    expect(loadError({ argv: ['serve'] })).toBe('Unexpected argument "serve"');
    expect(loadError({ argv: ['--set', 'server.prot=1'] })).toBe('Unknown setting server.prot (from --set); did you mean server.port?');
    expect(loadError({ argv: ['--set', 'server.tls_cert=/x'] })).toMatch(/^Unknown setting server\.tls_cert \(from --set\)/);
    expect(loadError({ argv: ['--port'] })).toBe('Missing value for --port');
    expect(loadError({ argv: ['--host', '--port', '1'] })).toBe('Missing value for --host');
    expect(loadError({ argv: ['--set', 'auth.jwt_secret'] })).toMatch(/^--set expects section\.key=value/);
  });

  it('name the flag in validation errors', () => {
    expect(loadError({ argv: ['--port', 'http'] })).toBe(
      'Invalid value for [server] port (from --port): expected an integer from 0 to 65535, got "http"',
    );
    expect(loadError({ argv: ['--set', 'logging.level=loud'] })).toMatch(
      /^Invalid value for \[logging\] level \(from --set logging\.level\): expected one of /,
    );
  });

  it('are exposed through parseConfigArgs', () => {
    expect(parseConfigArgs(['--config', 'x.toml', '--port=1', '--set', 'engine.threads=2'])).toEqual({
      config: 'x.toml',
      overrides: [
        { key: 'server.port', value: '1', flag: '--port' },
        { key: 'engine.threads', value: '2', flag: '--set engine.threads' },
      ],
    });
  });
});

describe('[jobs]', () => {
  it('defaults to a cap of 10 unfinished jobs per user and a 10 s heartbeat sent every second', () => {
    expect(load().jobs).toEqual({ max_active_per_user: 10, heartbeat_seconds: 10, heartbeat_refresh_seconds: 1, supervise_interval_seconds: 2, poll_interval_seconds: 1, max_attempts: 10 });
    expect(load({ env: { INFERNO_JOBS_MAX_ACTIVE_PER_USER: '0', INFERNO_JOBS_QUEUE_SCHEMA: 'jobs_q' } }).jobs).toMatchObject({ max_active_per_user: 0, queue_schema: 'jobs_q' });
  });

  it('refuses a heartbeat below pg-boss\'s 10 s, and a refresh not below the heartbeat, naming where each came from', () => {
    expect(loadError({ env: { INFERNO_JOBS_HEARTBEAT_SECONDS: '5' } })).toMatch(/^Invalid value for \[jobs\] heartbeat_seconds \(from INFERNO_JOBS_HEARTBEAT_SECONDS\)/);
    expect(loadError({ argv: ['--set', 'jobs.heartbeat_refresh_seconds=10'] })).toBe(
      '[jobs] heartbeat_refresh_seconds (10, from --set jobs.heartbeat_refresh_seconds) must be less than [jobs] heartbeat_seconds (10, from the default)',
    );
  });
});

describe('TLS', () => {
  it('requires cert and key together, naming where the one came from', () => {
    expect(loadError({ env: { INFERNO_SERVER_TLS_CERT: '/c.pem' } })).toBe(
      '[server.tls] cert and key must be set together: cert is set (from INFERNO_SERVER_TLS_CERT) but key is not',
    );
    const file = writeFile('inferno.toml', '[server.tls]\nkey = "k.pem"\n');
    expect(loadError()).toBe(`[server.tls] cert and key must be set together: key is set (from ${file}) but cert is not`);
    expect(load({ argv: ['--set', 'server.tls.cert=c.pem'] }).server.tls.cert).toBe(path.join(cwd, 'c.pem'));
  });

  it('validates min_version', () => {
    expect(loadError({ env: { INFERNO_SERVER_TLS_MIN_VERSION: 'TLSv1.1' } })).toBe(
      'Invalid value for [server.tls] min_version (from INFERNO_SERVER_TLS_MIN_VERSION): expected one of TLSv1.2, TLSv1.3, got "TLSv1.1"',
    );
  });
});

describe('secrets', () => {
  const short = 'too-short-secret-value';

  it('are never echoed in errors, from any source', () => {
    const fromEnv = loadError({ env: { INFERNO_JWT_SECRET: short } });
    expect(fromEnv).toBe('Invalid value for [auth] jwt_secret (from INFERNO_JWT_SECRET): must be at least 32 bytes');

    const fromFlag = loadError({ argv: ['--set', `auth.jwt_secret=${short}`] });
    expect(fromFlag).toBe('Invalid value for [auth] jwt_secret (from --set auth.jwt_secret): must be at least 32 bytes');

    const file = writeFile('inferno.toml', `[auth]\njwt_secret = "${short}"\n`);
    expect(loadError()).toBe(`Invalid value for [auth] jwt_secret (from ${file}): must be at least 32 bytes`);

    writeFile('inferno.toml', '[auth]\nadmin_password = 12345678\n');
    const wrongType = loadError();
    expect(wrongType).toBe(`Invalid value for [auth] admin_password (from ${file}): expected a string`);
    expect(wrongType).not.toContain('12345678');
  });

  it('count bytes, not characters', () => {
    expect(load({ env: { INFERNO_JWT_SECRET: 'é'.repeat(16) } }).auth.jwt_secret).toBe('é'.repeat(16));
  });

  it('are masked by describeConfig', () => {
    const config = load({ env: { INFERNO_JWT_SECRET: SECRET } });
    const described = describeConfig(config);
    expect(described.auth).toEqual({
      jwt_secret: '(set)',
      admin_password: null,
      token_ttl_seconds: 86400,
      login_max_failures: 5,
      login_lockout_seconds: 300,
      login_max_failures_per_address: 30,
      max_keys_per_user: 50,
    });
    expect(JSON.stringify(described)).not.toContain(SECRET);
    expect((described.server as { tls: unknown }).tls).toEqual({ cert: null, key: null, min_version: 'TLSv1.2' });
    expect(described.storage).toEqual({ data_dir: config.storage.data_dir, database_url: null, redis_url: null, pool_size: 10, redis_key_prefix: 'inferno' });
    // A copy: changing it must not change the live config.
    (described.server as { cors_methods: string[] }).cors_methods.push('PUT');
    expect(config.server.cors_methods).toEqual(['GET', 'POST', 'PATCH', 'DELETE']);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('shared storage URLs', () => {
  const DB_PASSWORD = 'pg-pass-9f3c';
  const REDIS_PASSWORD = 'redis-pass-77aa';

  it('take the short variables INFERNO_DATABASE_URL and INFERNO_REDIS_URL, and [storage] pool_size', () => {
    const config = load({
      env: { INFERNO_DATABASE_URL: 'postgres://app@db:5432/inferno', INFERNO_REDIS_URL: 'redis://cache:6379/0', INFERNO_STORAGE_POOL_SIZE: '25', INFERNO_REPLICA_ID: 'gpu-1' },
    });
    expect(config.storage).toMatchObject({ database_url: 'postgres://app@db:5432/inferno', redis_url: 'redis://cache:6379/0', pool_size: 25 });
    expect(config.server.replica_id).toBe('gpu-1');
  });

  it('mask the password wherever the configuration is shown', () => {
    const config = load({ env: { INFERNO_DATABASE_URL: `postgres://app:${DB_PASSWORD}@db/inferno`, INFERNO_REDIS_URL: `redis://:${REDIS_PASSWORD}@cache:6379` } });
    const described = JSON.stringify(describeConfig(config));
    expect(described).not.toContain(DB_PASSWORD);
    expect(described).not.toContain(REDIS_PASSWORD);
    expect(describeConfig(config).storage).toMatchObject({ database_url: 'postgres://app:***@db/inferno', redis_url: 'redis://:***@cache:6379' });
  });

  it('refuse other schemes, naming the key but never the password', () => {
    const error = loadError({ env: { INFERNO_DATABASE_URL: `mysql://app:${DB_PASSWORD}@db/inferno` } });
    expect(error).toContain('[storage] database_url');
    expect(error).toContain('postgres:');
    expect(error).not.toContain(DB_PASSWORD);
    expect(loadError({ env: { INFERNO_REDIS_URL: 'not a url' } })).toContain('[storage] redis_url');
  });
});
