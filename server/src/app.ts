import type { IncomingMessage, ServerResponse } from 'node:http';
import Koa from 'koa';
import type { Router } from '@koa/router';
import { createRouter } from './http/router.js';
import type { Config } from './config.js';
import type { ModelCatalog } from './engine/model-catalog.js';
import type { InferenceEngine } from './engine/engine.js';
import { inferenceRoutes } from './routes/inference.js';
import { openAIRoutes } from './routes/openai.js';
import { authenticate } from './http/authenticate.js';
import type { AppContext, AppState } from './http/context.js';
import { corsPolicy } from './http/cors.js';
import { errorHandler } from './http/error-handler.js';
import { idempotency } from './http/idempotency.js';
import { ApiError } from './http/errors.js';
import { rateLimit } from './http/rate-limit.js';
import { front } from './http/front.js';
import { liveness } from './http/liveness.js';
import { requestLog } from './http/request-log.js';
import { MemoryLoginThrottle, type LoginThrottle } from './limits/login-throttle.js';
import type { Drain } from './http/drain.js';
import { MemoryRateLimiter, type RateLimiter } from './limits/rate-limiter.js';
import type { Logger } from './logging/logger.js';
import { authRoutes } from './routes/auth.js';
import type { RouteDeps } from './routes/deps.js';
import { healthRoutes } from './routes/health.js';
import { modelRoutes } from './routes/models.js';
import { userRoutes } from './routes/users.js';
import { configRoutes } from './routes/config.js';
import { observabilityRoutes, prometheusRoutes } from './routes/observability.js';
import { ServerMetrics } from './observability/metrics.js';
import { Telemetry } from './observability/telemetry.js';
import type { Store } from './store/types.js';
import { ResponseCache } from './cache/response-cache.js';
import type { JobQueue } from './jobs/job-queue.js';
import { jobRoutes } from './routes/jobs.js';
import { cacheRoutes } from './routes/cache.js';
import { usageRoutes } from './routes/usage.js';

export interface AppOptions {
  config: Config;
  store: Store;
  logger: Logger;
  jwtSecret: Buffer;
  version: string;
  catalog: ModelCatalog;
  engine: InferenceEngine;
  rateLimiter?: RateLimiter;
  /** Metrics, usage accounting and tracing (default: metrics only). */
  telemetry?: Telemetry;
  /** Runs batch jobs; its lifecycle (start, stop) belongs to the caller. */
  jobs: JobQueue;
  cache?: ResponseCache;
  /** Graceful shutdown: while it drains, new requests are answered 503. */
  drain?: Drain;
  /** Served over HTTPS: send Strict-Transport-Security. */
  hsts?: boolean;
  /** Shared (Redis) login counters; in memory by default. */
  loginThrottle?: LoginThrottle;
  /** The rate limiter and login throttle count in Redis (reported by /health/ready). */
  sharedLimits?: boolean;
  /** This replica's name, reported by /health/ready. */
  replicaId?: string;
  /** Tells the other replicas that persisted settings changed (`PATCH /config`). */
  settingsChanged?: () => void;
  /** Each dependency and whether it answers now (default: the store and the engine). */
  readiness?: () => Promise<Record<string, boolean>>;
}

// The API families (`/api/v1`, `/v1` and below), plus the Prometheus endpoint, which is
// authenticated and rate-limited like them.
const isApiPath = (path: string) => path.startsWith('/api/v1/') || path.startsWith('/v1/') || path === '/metrics' || path === '/api/v1' || path === '/v1';

/**
 * A router's middleware, run only for the paths it can match (its prefix): every other request
 * skips it without paying for the router's matching. What a router that matched nothing leaves
 * behind (`ctx.matched`, an empty list) is left the same, so `allowedMethods` answers as before.
 */
const under = (prefix: string, router: Router<AppState>) => {
  const middleware = router.routes() as unknown as (ctx: AppContext, next: () => Promise<unknown>) => unknown;
  return (ctx: AppContext, next: () => Promise<unknown>) => {
    if (ctx.path.startsWith(prefix)) return middleware(ctx, next);
    (ctx as { matched?: unknown[] }).matched ??= [];
    return next();
  };
};

/** Runs `middleware` only for the API families; health probes and the root skip it. */
const forApi = (middleware: (ctx: AppContext, next: () => Promise<unknown>) => unknown) => (ctx: AppContext, next: () => Promise<unknown>) =>
  isApiPath(ctx.path) ? middleware(ctx, next) : next();

export interface App {
  koa: Koa<AppState>;
  /**
   * Answers the liveness probe before Koa when it can (see `http/liveness.ts`); returns whether
   * it did. Undefined when tracing is on.
   */
  liveness?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

/**
 * The request's journey, top to bottom: an id and the headers every response carries (`front`),
 * a log line, error formatting, the drain, CORS, then for the API: who is calling, their rate
 * limit, and the routes (each route adds its own permission check, body parsing and validation).
 * Each router runs only for its own prefix. `GET /health` usually takes a shorter way (`liveness`).
 */
export function createApp(options: AppOptions): App {
  const { config, store, logger } = options;
  // Behind a proxy only the address it appended to X-Forwarded-For is trusted: whatever a client
  // wrote there itself comes before it and is ignored.
  const app = new Koa<AppState>({ proxy: config.server.trust_proxy, maxIpsCount: 1 });
  app.silent = true; // errors are logged by errorHandler, redacted

  const telemetry = options.telemetry ?? new Telemetry(new ServerMetrics({ version: options.version }), undefined);
  const deps: RouteDeps = {
    telemetry,
    config,
    store,
    logger,
    jwtSecret: options.jwtSecret,
    settingsChanged: options.settingsChanged,
    version: options.version,
    startedAt: Date.now(),
    loginThrottle:
      options.loginThrottle ??
      new MemoryLoginThrottle(() => ({
        maxFailures: config.auth.login_max_failures,
        maxFailuresPerAddress: config.auth.login_max_failures_per_address,
        lockoutSeconds: config.auth.login_lockout_seconds,
      })),
  };
  const { catalog, engine } = options;
  const cache = options.cache ?? new ResponseCache(() => config.cache, (id) => catalog.pathOf(id));
  telemetry.metrics?.watch({ engine, cache, jobs: store });

  const api = createRouter('/api/v1');
  for (const routes of [
    authRoutes(deps),
    userRoutes(deps),
    modelRoutes(deps, catalog, engine, cache),
    inferenceRoutes(deps, engine, cache),
    jobRoutes(deps, options.jobs),
    cacheRoutes(deps, cache, engine),
    observabilityRoutes(deps),
    usageRoutes(deps),
    configRoutes(deps),
  ]) {
    api.use(routes.routes());
  }
  const openai = createRouter('/v1');
  openai.use(openAIRoutes(deps, catalog, engine).routes());
  const readiness = options.readiness ?? (async () => ({ store: await store.ping(), engine: engine.ready }));
  const health = healthRoutes(deps, readiness, {
    replicaId: options.replicaId ?? 'local',
    store: store.kind,
    limits: options.sharedLimits ? 'redis' : 'memory',
  });
  const prometheus = prometheusRoutes(deps);
  // Requests refused before routing (401, 429) still count under their route's template.
  telemetry.routeOf = (path, method) => routeTemplate([prometheus, api, openai, health], path, method);
  const { tracing } = telemetry;

  app.use(front({ hsts: options.hsts === true }));
  if (tracing.enabled) app.use(tracing.request);
  app.use(requestLog(logger, telemetry));
  app.use(errorHandler(logger));
  if (options.drain) app.use(options.drain.middleware());
  app.use(corsPolicy({ origins: config.server.cors_origins, methods: config.server.cors_methods, headers: config.server.cors_headers }));
  app.use(under('/health', health));
  app.use(forApi(tracing.wrap('authenticate', authenticate({ store, secret: options.jwtSecret }))));
  app.use(
    forApi(
      tracing.wrap(
        'rate_limit',
        rateLimit({
          limiter: options.rateLimiter ?? new MemoryRateLimiter(),
          audit: store,
          enabled: () => config.rate_limit.enabled,
          requestsPerMinute: () => config.rate_limit.requests_per_minute,
          windowSeconds: () => config.rate_limit.window_seconds,
          onRefused: (ctx) => telemetry.rateLimited(ctx),
        }),
      ),
    ),
  );
  app.use(
    idempotency({
      store,
      ttlSeconds: () => config.idempotency.ttl_seconds,
      maxPerPrincipal: () => config.idempotency.max_keys_per_principal,
      maxBodyBytes: () => config.limits.max_body_bytes,
      maxResponseBytes: () => config.idempotency.max_response_bytes,
      secret: options.jwtSecret,
    }),
  );
  app.use(notFoundFallback);
  app.use(under('/metrics', prometheus));
  app.use(under('/api/v1', api));
  app.use(api.allowedMethods());
  // Mounted below api.allowedMethods, which answers 405 for /v1 too (it sees whichever router matched).
  app.use(under('/v1', openai));
  const hsts = options.hsts === true;
  return {
    koa: app,
    liveness: tracing.enabled ? undefined : liveness({ deps, logger, telemetry, hsts, proxy: app.proxy, drain: options.drain }),
  };
}

/** The template (`/api/v1/models/:id`) of the route a path and method would reach, if any. */
function routeTemplate(routers: readonly Router<AppState>[], path: string, method: string): string | undefined {
  for (const router of routers) {
    const layer = router.match(path, method).pathAndMethod.findLast((l) => l.methods.length > 0);
    if (layer && typeof layer.path === 'string') return layer.path;
  }
  return undefined;
}

/**
 * Whatever no route answered is a 404 in the documented format; a known route called with
 * another method (the router has set 405 or 501 and `Allow`) is a 405.
 */
async function notFoundFallback(ctx: AppContext, next: () => Promise<unknown>) {
  await next();
  if (ctx.body != null || ctx.respond === false) return;
  if (ctx.status === 404) throw new ApiError('NOT_FOUND', 'No such route');
  if (ctx.status === 405 || ctx.status === 501) throw new ApiError('METHOD_NOT_ALLOWED', `This route does not take ${ctx.method}; it takes ${ctx.response.get('Allow')}`);
}
