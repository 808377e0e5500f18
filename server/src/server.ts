import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { DestinationStream } from 'pino';
import { createApp } from './app.js';
import { hashPassword } from './auth/passwords.js';
import { loadJwtSecret } from './auth/jwt.js';
import { describeConfig, type Config } from './config.js';
import { createLogger, flushLogs, type Logger } from './logging/logger.js';
import { openStore } from './store/open-store.js';
import { withCredentialCache } from './store/credential-cache.js';
import { SqliteStore } from './store/sqlite-store.js';
import { PostgresStore } from './store/postgres-store.js';
import { UsernameTakenError } from './store/types.js';
import { connectRedis, redisAnswers } from './shared/redis.js';
import { RedisRateLimiter } from './limits/redis-rate-limiter.js';
import { RedisLoginThrottle } from './limits/redis-login-throttle.js';
import type { Redis } from 'ioredis';
import { InferenceEngine } from './engine/engine.js';
import { ModelCatalog } from './engine/model-catalog.js';
import { ensureDemoModel } from './engine/demo-bootstrap.js';
import { applyPersistedSettings, watchSettings } from './runtime-settings.js';
import { SettingsChannel } from './shared/settings-channel.js';
import { BossJobQueue } from './jobs/boss-job-queue.js';
import type { JobQueue } from './jobs/job-queue.js';
import { JobRunner } from './jobs/job-runner.js';
import type { Store } from './store/types.js';
import { ConnectionGuard } from './http/connection-guard.js';
import { Drain } from './http/drain.js';
import { ShuttingDownError } from './engine/engine.js';

import { ServerMetrics } from './observability/metrics.js';
import { Telemetry } from './observability/telemetry.js';
import { startTracing } from './observability/tracing-setup.js';
import { UsageRecorder } from './observability/usage.js';

/**
 * TLS 1.2 suites with forward secrecy and authenticated encryption only (ECDHE with AES-GCM or
 * ChaCha20-Poly1305); static-RSA and CBC suites are refused. TLS 1.3's own suites are all AEAD.
 */
export const TLS_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export const VERSION = '0.1.0';

/**
 * How long an API key, user or token-revocation lookup is answered from memory (embedded mode).
 * A change made through this server, or by another process on the same SQLite database (seen by
 * its `data_version`), takes effect on the next request whatever this is; it is a further bound.
 */
export const CREDENTIAL_CACHE_MS = 2_000;

export interface RunningServer {
  /** Where the server listens, e.g. `http://127.0.0.1:8080`. */
  url: string;
  port: number;
  config: Config;
  store: Store;
  logger: Logger;
  engine: InferenceEngine;
  catalog: ModelCatalog;
  /** This replica's name in logs, readiness and job leases. */
  replicaId: string;
  /** Metrics, usage accounting and tracing of this server. */
  telemetry: Telemetry;
  /** Stops at once: open connections are cut. */
  close(): Promise<void>;
  /**
   * Graceful stop (SIGTERM): new requests get 503 with `Retry-After`, running ones get
   * `[server] shutdown_grace_seconds` to finish, generations still running then end with an
   * error event, and the server closes.
   */
  shutdown(): Promise<void>;
}

export interface StartOptions {
  /** Where log lines go (default stdout). */
  logDestination?: DestinationStream;
  /** Where the one-time generated admin password is announced (default stderr, outside the log). */
  announce?: (message: string) => void;
}

/**
 * On first start with an empty store, creates `admin` with `[auth] admin_password`, or with a
 * random password announced once on the console (never written to the log).
 */
async function bootstrapAdmin(store: Store, config: Config, logger: Logger, announce: (message: string) => void) {
  if ((await store.countUsers()) > 0) {
    if (config.auth.admin_password) {
      logger.warn(
        'INFERNO_ADMIN_PASSWORD ([auth] admin_password) is ignored: users exist already. ' +
          'To set a password now, run: npm run server -- users reset-password admin --password-from-env',
      );
    }
    return;
  }
  const password = config.auth.admin_password ?? randomBytes(18).toString('base64url');
  try {
    await store.createUser({ username: 'admin', passwordHash: await hashPassword(password), role: 'admin' });
  } catch (error) {
    // Replicas starting together on one database: another one created the admin first.
    if (error instanceof UsernameTakenError) return;
    throw error;
  }
  await store.recordAudit({ action: 'user.create', outcome: 'success', target: 'admin', details: { bootstrap: true } });
  logger.info({ username: 'admin' }, 'created the first admin user');
  if (!config.auth.admin_password) {
    announce(
      `\n  Inferno: created user "admin" with password ${password}\n` +
        '  It is shown only this once: log in and change it (PATCH /api/v1/users/{id}).\n\n',
    );
  }
}

export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  // Cut to the spec's bound: it is shown in readiness answers, log lines and a metric label.
  const replicaId = (config.server.replica_id ?? `${hostname()}-${process.pid}`).slice(0, 128);
  // Every line names its replica: several share one log pipeline behind a load balancer.
  const logger = createLogger(config.logging.level, options.logDestination, config.logging.buffered).child({ replica: replicaId });
  mkdirSync(config.storage.data_dir, { recursive: true, mode: 0o700 });
  // An unreachable database ends the start here, with a message that names it (password masked).
  const store = await openStore(config.storage);
  let redis: Redis | undefined;
  let stopWatching = () => {};
  try {
    if (config.storage.redis_url) redis = await connectRedis(config.storage.redis_url);
    const shared = store.kind === 'postgres';
    await bootstrapAdmin(store, config, logger, options.announce ?? ((m) => process.stderr.write(m)));
    const settings = applyPersistedSettings(config, await store.getSettings());
    if (settings.applied.length > 0) logger.info({ keys: settings.applied }, 'applied settings changed at run time (PATCH /api/v1/config)');
    if (settings.skipped.length > 0) logger.warn({ keys: settings.skipped }, 'ignored persisted settings that are no longer valid');
    logger.level = config.logging.level;
    // Replicas must sign and verify with one key: without a configured one, it is generated once into the shared store.
    const jwtSecret =
      shared && !config.auth.jwt_secret
        ? Buffer.from(await store.getOrCreateSecret('jwt_secret', randomBytes(48).toString('base64url')), 'utf8')
        : loadJwtSecret(config.auth.jwt_secret, config.storage.data_dir);
    // A setting PATCHed on another replica reaches this one at once when Redis carries the word
    // (pub/sub), and within a second by polling in any case (the fallback).
    let settingsChannel: SettingsChannel | undefined;
    if (shared) {
      const watch = watchSettings(store, config, logger, 500);
      if (redis) {
        settingsChannel = new SettingsChannel(redis, config.storage.redis_key_prefix, logger);
        await settingsChannel.subscribe(() => watch.refresh());
      }
      stopWatching = () => {
        watch.stop();
        settingsChannel?.close();
      };
    }
    // Keys claimed by requests that never finished: alone, every pending key is from an earlier run;
    // shared, only those older than the longest request (other replicas' requests are still running).
    const now = Date.now();
    await store.sweepIdempotencyKeys(now, shared ? now - config.server.request_timeout_seconds * 1000 : now);
    const metrics = config.metrics.enabled ? new ServerMetrics({ version: VERSION, replica: replicaId }) : undefined;
    const usage = new UsageRecorder(store, logger, { enabled: () => config.usage.enabled, flushIntervalMs: config.usage.flush_interval_seconds * 1000 });
    const tracing = await startTracing(config.tracing, VERSION, logger);
    const telemetry = new Telemetry(metrics, usage, tracing);
    let engine: InferenceEngine | undefined;
    const catalog = new ModelCatalog(
      config.models.dir,
      (id) => engine?.isLoaded(id) ?? false,
      (id, file, reason) => logger.warn({ model: id, file: path.basename(file), reason }, 'invalid model file: it is listed as invalid and will not be loaded'),
    );
    // Validates (and so reports) every model file at start, then writes the demo model if none is usable.
    await ensureDemoModel(catalog, logger);
    engine = new InferenceEngine(config, catalog, logger, metrics && {
      modelLoaded: (model, seconds) => metrics.modelLoaded(model, seconds),
      modelLoadFailed: (model) => metrics.modelLoadFailed(model),
      queueWaited: (model, seconds) => metrics.queueWaited(model, seconds),
    });
    // The binding loads in the background; /health/ready says when it can serve.
    engine.start().catch((error: unknown) => logger.error({ err: error }, 'the llama.cpp engine failed to start'));
    // Alone on SQLite: the in-process runner. Shared on PostgreSQL: pg-boss dispatches jobs to every replica's worker.
    // The worker name is this process, not just the replica id: a restarted replica (same id) never
    // writes to a job its previous process held.
    const worker = `${replicaId}/${process.pid}/${randomBytes(3).toString('hex')}`;
    const jobs: JobQueue = shared
      ? new BossJobQueue({ store, engine, config, logger, telemetry, worker, replicaId, databaseUrl: config.storage.database_url! })
      : new JobRunner({ store, engine, config, logger, telemetry, worker });
    const drain = new Drain();
    const tls = config.server.tls;
    const secure = Boolean(tls.cert && tls.key);
    // Credential lookups are answered from memory while nothing changed them: this process's own
    // writes drop what they change at once; another process's are seen on the next request, by
    // SQLite's data_version embedded, and shared by PostgreSQL's credentials count, read (one
    // query for the lookups waiting together) before memory answers (server/src/store/credential-cache.ts).
    // (Traced outside the cache: a request's spans show the lookups it made, answered from memory or
    // not; a count read shows in the span of the request that sent it.)
    const sharedStore = store instanceof PostgresStore ? tracing.instrument('store', store) : undefined;
    const appStore = tracing.instrument(
      'store',
      withCredentialCache(store, {
        ttlMs: CREDENTIAL_CACHE_MS,
        ...(store instanceof SqliteStore && { externalVersion: () => store.dataVersion() }),
        ...(sharedStore && { sharedVersion: () => sharedStore.credentialsVersion() }),
      }),
    );
    const app = createApp({
      config,
      store: appStore,
      logger,
      jwtSecret,
      version: VERSION,
      catalog,
      engine,
      jobs,
      drain,
      hsts: secure,
      telemetry,
      replicaId,
      ...(settingsChannel && { settingsChanged: () => settingsChannel.publish() }),
      sharedLimits: Boolean(redis),
      ...(redis && {
        rateLimiter: new RedisRateLimiter(redis, logger, `${config.storage.redis_key_prefix}:rl`),
        loginThrottle: new RedisLoginThrottle(redis, () => ({
          maxFailures: config.auth.login_max_failures,
          maxFailuresPerAddress: config.auth.login_max_failures_per_address,
          lockoutSeconds: config.auth.login_lockout_seconds,
        }), `${config.storage.redis_key_prefix}:login`),
      }),
      readiness: async () => ({
        store: await store.ping(),
        ...(redis && { redis: await redisAnswers(redis) }),
        engine: engine.ready,
      }),
    });

    const limits = config.server;
    // Slow-loris guards: headers in time; the whole request (not the response: streams may last)
    // within request_timeout_seconds, which bounds the slowest model upload; keep-alive idle closed.
    const httpOptions: http.ServerOptions = {
      headersTimeout: limits.headers_timeout_seconds * 1000,
      requestTimeout: Math.max(limits.request_timeout_seconds, limits.headers_timeout_seconds) * 1000,
      keepAliveTimeout: limits.keep_alive_timeout_seconds * 1000,
      // Node checks those timeouts every 30 s by default: a slow client would get 30 s more.
      connectionsCheckingInterval: 1000,
    };
    const counted = drain.counting(app.koa.callback());
    const { liveness } = app;
    const handle = liveness ? (req: http.IncomingMessage, res: http.ServerResponse) => void (liveness(req, res) || counted(req, res)) : counted;
    const server = secure
      ? https.createServer(
          {
            ...httpOptions,
            cert: readFileSync(tls.cert!),
            key: readFileSync(tls.key!),
            minVersion: tls.min_version,
            ciphers: TLS_CIPHERS,
            honorCipherOrder: true,
            // A handshake is bounded like headers (Node's default is 120 s).
            handshakeTimeout: limits.headers_timeout_seconds * 1000,
          },
          handle,
        )
      : http.createServer(httpOptions, handle);
    const guard = new ConnectionGuard(
      server,
      () => ({ maxConnections: limits.max_connections, maxPerAddress: limits.max_connections_per_address, bodyIdleMs: limits.body_idle_timeout_seconds * 1000 }),
      (reason, address) => logger.debug({ reason, ip: address }, 'connection closed'),
    );
    drain.track(server);
    // Before listening: a job submitted on the first request can be dispatched.
    await jobs.start();

    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.server.port, config.server.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    usage.start();
    const scheme = tls.cert ? 'https' : 'http';
    const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
    const url = `${scheme}://${host}:${port}`;
    logger.info({ url, store: store.kind, limits: redis ? 'redis' : 'memory', config: describeConfig(config) }, 'Inferno server listening');

    let closing: Promise<void> | undefined;
    let shuttingDown: Promise<void> | undefined;
    const close = () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }).then(async () => {
        guard.stop();
        stopWatching();
        await jobs.stop();
        // The handlers of the cut requests run on (their generations stop as their clients are
        // gone): what they still write (audit, usage, idempotency records) goes in before the
        // store closes.
        if (!(await drain.whenHandlersDone(5000))) logger.warn('request handlers still running 5 s after the connections were cut; closing anyway');
        await engine.close();
        catalog.close();
        // The last batch of usage is written before the store closes.
        await usage.close();
        await tracing.shutdown();
        await store.close();
        redis?.disconnect();
        // Buffered log lines are written out before close() resolves (and so before the CLI exits).
        await flushLogs(logger);
      });
      return closing;
    };
    return {
      url,
      port,
      config,
      store: appStore,
      logger,
      engine,
      catalog,
      replicaId,
      telemetry,
      close,
      shutdown() {
        shuttingDown ??= (async () => {
          const graceMs = config.server.shutdown_grace_seconds * 1000;
          drain.begin(graceMs);
          logger.info({ grace_seconds: config.server.shutdown_grace_seconds, in_flight: drain.active }, 'draining: new requests get 503, running ones may finish');
          if (!(await drain.whenIdle(graceMs))) {
            logger.warn({ in_flight: drain.active }, 'grace period over: ending the generations still running');
            engine.stopGenerations(new ShuttingDownError());
            // Their streams now send their last event; whatever is left after that is cut.
            await drain.whenIdle(5000);
          }
          await close();
        })();
        return shuttingDown;
      },
    };
  } catch (error) {
    stopWatching();
    redis?.disconnect();
    await store.close();
    throw error;
  }
}
