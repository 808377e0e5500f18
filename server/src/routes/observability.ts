import type { Router } from '@koa/router';
import { createRouter } from '../http/router.js';
import type { AuditEntry, ListAuditLogsData } from '../gen/types.gen.js';
import { zListAuditLogsQuery } from '../gen/zod.gen.js';
import { requireAuth, requirePermission } from '../http/authenticate.js';
import type { AppMiddleware, AppState } from '../http/context.js';
import { notFound } from '../http/errors.js';
import { validate } from '../http/validate.js';
import type { ServerMetrics } from '../observability/metrics.js';
import type { AuditRecord } from '../store/types.js';
import type { RouteDeps } from './deps.js';

const presentAudit = (r: AuditRecord): AuditEntry => ({
  id: r.id,
  time: r.time,
  action: r.action,
  outcome: r.outcome,
  actor_user_id: r.actorUserId,
  actor_key_id: r.actorKeyId,
  target: r.target,
  ip: r.ip,
  request_id: r.requestId,
  details: r.details,
});

/** The audit log query and the metrics, under /api/v1. */
export function observabilityRoutes(deps: RouteDeps): Router<AppState> {
  const router = createRouter();

  router.get('/audit-logs', requireAuth, requirePermission(deps.store, 'view_audit_logs'), validate({ query: zListAuditLogsQuery }), async (ctx) => {
    const query = ctx.state.input.query as NonNullable<ListAuditLogsData['query']> & { limit: number };
    // One extra row tells whether an older page exists.
    const rows = await deps.store.listAudit({
      actor: query.actor,
      action: query.action,
      since: query.since,
      until: query.until,
      beforeId: query.cursor === undefined ? undefined : Number(query.cursor),
      limit: query.limit + 1,
    });
    const page = rows.slice(0, query.limit);
    ctx.body = { data: page.map(presentAudit), next_cursor: rows.length > query.limit ? String(page.at(-1)!.id) : null };
  });

  router.get('/metrics', requireAuth, requirePermission(deps.store, 'read_metrics'), async (ctx) => {
    ctx.body = await enabledMetrics(deps).summary();
  });

  return router;
}

/**
 * Prometheus scrapes `/metrics` at the root, with a key that has `read_metrics`, or without
 * credentials when `[metrics] public` is set (for a scraper inside a trusted network).
 */
export function prometheusRoutes(deps: RouteDeps): Router<AppState> {
  const router = createRouter();
  const auth = requirePermission(deps.store, 'read_metrics');
  const guard: AppMiddleware = async (ctx, next) => (deps.config.metrics.public ? next() : requireAuth(ctx, async () => auth(ctx, next)));
  router.get('/metrics', guard, async (ctx) => {
    const metrics = enabledMetrics(deps);
    const text = await metrics.prometheus();
    ctx.type = metrics.contentType;
    ctx.body = text;
  });
  return router;
}

function enabledMetrics(deps: RouteDeps): ServerMetrics {
  const { metrics } = deps.telemetry;
  if (!metrics) throw notFound('Metrics are turned off ([metrics] enabled = false)');
  return metrics;
}
