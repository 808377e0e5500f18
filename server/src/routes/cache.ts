import type { Router } from '@koa/router';
import { createRouter } from '../http/router.js';
import type { ResponseCache } from '../cache/response-cache.js';
import type { InferenceEngine } from '../engine/engine.js';
import type { CacheStats } from '../gen/types.gen.js';
import { audit } from '../http/audit.js';
import { requireAuth, requirePermission } from '../http/authenticate.js';
import type { AppState } from '../http/context.js';
import type { RouteDeps } from './deps.js';

/** The response cache's statistics and clearing, with the loaded models' sequences (`manage_cache`). */
export function cacheRoutes(deps: RouteDeps, cache: ResponseCache, engine: InferenceEngine): Router<AppState> {
  const { store } = deps;
  const router = createRouter();
  const canManage = [requireAuth, requirePermission(store, 'manage_cache')];

  router.get('/cache', ...canManage, (ctx) => {
    ctx.body = { ...cache.stats(), loaded_models: engine.stats() } satisfies CacheStats;
  });

  router.delete('/cache', ...canManage, async (ctx) => {
    const entries = cache.clear();
    await audit(store, ctx, { action: 'cache.clear', outcome: 'success', target: 'cache', details: { entries } });
    ctx.status = 204;
  });

  return router;
}
