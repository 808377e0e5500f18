import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { DestinationStream } from 'pino';
import { createApp } from './app.js';
import { hashPassword } from './auth/passwords.js';
import { loadJwtSecret } from './auth/jwt.js';
import { describeConfig, type Config } from './config.js';
import { createLogger, type Logger } from './logging/logger.js';
import { SqliteStore } from './store/sqlite-store.js';
import { InferenceEngine } from './engine/engine.js';
import { ModelCatalog } from './engine/model-catalog.js';
import { ensureDemoModel } from './engine/demo-bootstrap.js';
import { applyPersistedSettings } from './runtime-settings.js';
import { JobRunner } from './jobs/job-runner.js';
import type { Store } from './store/types.js';
import { ServerMetrics } from './observability/metrics.js';
import { Telemetry } from './observability/telemetry.js';
import { startTracing } from './observability/tracing-setup.js';
import { UsageRecorder } from './observability/usage.js';

export const VERSION = '0.1.0';

export interface RunningServer {
  /** Where the server listens, e.g. `http://127.0.0.1:8080`. */
  url: string;
  port: number;
  config: Config;
  store: Store;
  logger: Logger;
  engine: InferenceEngine;
  catalog: ModelCatalog;
  /** Metrics, usage accounting and tracing of this server. */
  telemetry: Telemetry;
  close(): Promise<void>;
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
  if (store.countUsers() > 0) return;
  const password = config.auth.admin_password ?? randomBytes(18).toString('base64url');
  store.createUser({ username: 'admin', passwordHash: await hashPassword(password), role: 'admin' });
  store.recordAudit({ action: 'user.create', outcome: 'success', target: 'admin', details: { bootstrap: true } });
  logger.info({ username: 'admin' }, 'created the first admin user');
  if (!config.auth.admin_password) {
    announce(
      `\n  Inferno: created user "admin" with password ${password}\n` +
        '  It is shown only this once: log in and change it (PATCH /api/v1/users/{id}).\n\n',
    );
  }
}

export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const logger = createLogger(config.logging.level, options.logDestination);
  mkdirSync(config.storage.data_dir, { recursive: true, mode: 0o700 });
  const store = new SqliteStore(config.storage.data_dir);
  try {
    await bootstrapAdmin(store, config, logger, options.announce ?? ((m) => process.stderr.write(m)));
    const settings = applyPersistedSettings(config, store.getSettings());
    if (settings.applied.length > 0) logger.info({ keys: settings.applied }, 'applied settings changed at run time (PATCH /api/v1/config)');
    if (settings.skipped.length > 0) logger.warn({ keys: settings.skipped }, 'ignored persisted settings that are no longer valid');
    logger.level = config.logging.level;
    const jwtSecret = loadJwtSecret(config.auth.jwt_secret, config.storage.data_dir);
    await ensureDemoModel(config.models.dir, logger);
    const metrics = config.metrics.enabled ? new ServerMetrics({ version: VERSION }) : undefined;
    const usage = new UsageRecorder(store, logger, { enabled: () => config.usage.enabled, flushIntervalMs: config.usage.flush_interval_seconds * 1000 });
    const tracing = await startTracing(config.tracing, VERSION, logger);
    const telemetry = new Telemetry(metrics, usage, tracing);
    let engine: InferenceEngine | undefined;
    const catalog = new ModelCatalog(config.models.dir, (id) => engine?.isLoaded(id) ?? false);
    engine = new InferenceEngine(config, catalog, logger, metrics && {
      modelLoaded: (model, seconds) => metrics.modelLoaded(model, seconds),
      modelLoadFailed: (model) => metrics.modelLoadFailed(model),
      queueWaited: (model, seconds) => metrics.queueWaited(model, seconds),
    });
    // The binding loads in the background; /health/ready says when it can serve.
    engine.start().catch((error: unknown) => logger.error({ err: error }, 'the llama.cpp engine failed to start'));
    const jobs = new JobRunner({ store, engine, config, logger, telemetry });
    const app = createApp({ config, store: tracing.instrument('store', store), logger, jwtSecret, version: VERSION, catalog, engine, jobs, telemetry });

    const tls = config.server.tls;
    const server =
      tls.cert && tls.key
        ? https.createServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key), minVersion: tls.min_version }, app.callback())
        : http.createServer(app.callback());
    // Slow-loris guards: a client must send its headers and body in reasonable time.
    server.headersTimeout = 30_000;
    // The whole request (not the response: streams may last) must arrive within 5 minutes, so a
    // client cannot hold a half-sent body open forever; it bounds the slowest model upload too.
    server.requestTimeout = 300_000;

    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.server.port, config.server.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    jobs.start();
    usage.start();
    const scheme = tls.cert ? 'https' : 'http';
    const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
    const url = `${scheme}://${host}:${port}`;
    logger.info({ url, config: describeConfig(config) }, 'Inferno server listening');

    let closing: Promise<void> | undefined;
    return {
      url,
      port,
      config,
      store,
      logger,
      engine,
      catalog,
      telemetry,
      close() {
        closing ??= new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }).then(async () => {
          await jobs.stop();
          await engine.close();
          // The last batch of usage is written before the store closes.
          await usage.close();
          await tracing.shutdown();
          store.close();
          logger.flush();
        });
        return closing;
      },
    };
  } catch (error) {
    store.close();
    throw error;
  }
}
