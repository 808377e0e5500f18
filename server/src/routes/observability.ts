import type { Router } from '@koa/router';
import { createRouter } from '../http/router.js';
import type { AuditEntry, ListAuditLogsData } from '../gen/types.gen.js';
import { zListAuditLogsQuery } from '../gen/zod.gen.js';
import { requireAuth, requirePermission } from '../http/authenticate.js';
import type { AppState } from '../http/context.js';
import { validate } from '../http/validate.js';
import type { ServerMetrics } from '../metrics.js';
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
export function observabilityRoutes(deps: RouteDeps, metrics: ServerMetrics): Router<AppState> {
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

  router.get('/metrics', requireAuth, requirePermission(deps.store, 'read_metrics'), (ctx) => {
    ctx.body = metrics.summary();
  });

  return router;
}

/** Prometheus scrapes `/metrics` at the root, with a key that has `read_metrics`. */
export function prometheusRoutes(deps: RouteDeps, metrics: ServerMetrics): Router<AppState> {
  const router = createRouter();
  router.get('/metrics', requireAuth, requirePermission(deps.store, 'read_metrics'), (ctx) => {
    ctx.type = 'text/plain; version=0.0.4; charset=utf-8';
    ctx.body = metrics.prometheus();
  });
  return router;
}
