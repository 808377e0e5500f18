import type { Router } from '@koa/router';
import { createRouter } from '../http/router.js';
import type { AppState } from '../http/context.js';
import type { Readiness } from '../gen/types.gen.js';
import type { RouteDeps } from './deps.js';

/** What `GET /health` answers (here, and before Koa: `http/liveness.ts`). */
export const livenessBody = (deps: Pick<RouteDeps, 'version' | 'startedAt'>) => ({ status: 'ok', version: deps.version, uptime_seconds: (Date.now() - deps.startedAt) / 1000 });

/** Public probes: no authentication and no rate limit, so orchestrators can always reach them. */
export function healthRoutes(
  deps: RouteDeps,
  readiness: () => Promise<Record<string, boolean>>,
  about: { replicaId: string; store: Readiness['backends']['store']; limits: Readiness['backends']['limits'] },
): Router<AppState> {
  const router = createRouter();
  router.get('/health', (ctx) => {
    ctx.body = livenessBody(deps);
  });
  router.get('/health/ready', async (ctx) => {
    const checks = (await readiness()) as Readiness['checks'];
    const ready = Object.values(checks).every(Boolean);
    ctx.status = ready ? 200 : 503;
    if (!ready) ctx.set('Retry-After', '1');
    ctx.body = { ready, checks, replica_id: about.replicaId, backends: { store: about.store, limits: about.limits } } satisfies Readiness;
  });
  return router;
}
