import { Router } from '@koa/router';
import { zGetModelPath } from '../gen/zod.gen.js';
import type { ModelCatalog } from '../engine/model-catalog.js';
import { requireAuth, requirePermission } from '../http/authenticate.js';
import type { AppState } from '../http/context.js';
import { notFound } from '../http/errors.js';
import { validate } from '../http/validate.js';
import type { RouteDeps } from './deps.js';

export function modelRoutes(deps: RouteDeps, catalog: ModelCatalog): Router<AppState> {
  const router = new Router<AppState>();
  const canRead = [requireAuth, requirePermission(deps.store, 'read_models')];

  router.get('/models', ...canRead, async (ctx) => {
    ctx.body = { object: 'list', data: await catalog.list() };
  });

  router.get('/models/:id', ...canRead, validate({ params: zGetModelPath }), async (ctx) => {
    const { id } = ctx.state.input.params as { id: string };
    const model = await catalog.get(id);
    if (!model) throw notFound(`No model with id ${id}`);
    ctx.body = model;
  });

  return router;
}
