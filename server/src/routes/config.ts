import type { Router } from '@koa/router';
import { createRouter } from '../http/router.js';
import { describeConfig } from '../config.js';
import type { ConfigPatch } from '../gen/types.gen.js';
import { zUpdateConfigBody } from '../gen/zod.gen.js';
import { audit } from '../http/audit.js';
import { requireAuth, requirePermission } from '../http/authenticate.js';
import type { AppState } from '../http/context.js';
import { validationError } from '../http/errors.js';
import { jsonBody } from '../http/json-body.js';
import { validate } from '../http/validate.js';
import { applySettings, flattenPatch } from '../runtime-settings.js';
import type { RouteDeps } from './deps.js';

export function configRoutes(deps: RouteDeps): Router<AppState> {
  const { config, store, logger } = deps;
  const router = createRouter();
  router.use('/config', requireAuth, requirePermission(store, 'write_config'));

  router.get('/config', (ctx) => {
    ctx.body = describeConfig(config);
  });

  router.patch('/config', jsonBody(() => config.limits.max_body_bytes), validate({ body: zUpdateConfigBody }), async (ctx) => {
    const changes = flattenPatch(ctx.state.input.body as ConfigPatch);
    if (Object.keys(changes).length === 0) throw validationError([{ path: 'body', message: 'Give at least one setting to change' }]);
    const before = Object.fromEntries(Object.keys(changes).map((dotted) => {
      const [section, key] = dotted.split('.') as [keyof typeof config, string];
      return [dotted, (config[section] as Record<string, unknown>)[key]];
    }));
    await store.putSettings(changes);
    deps.settingsChanged?.();
    applySettings(config, changes);
    if ('logging.level' in changes) logger.level = config.logging.level;
    await audit(store, ctx, { action: 'config.update', outcome: 'success', target: Object.keys(changes).join(','), details: { before, after: changes } });
    ctx.body = describeConfig(config);
  });

  return router;
}
