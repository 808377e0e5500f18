import type { Router } from '@koa/router';
import type { GetUsageData, UsageReport } from '../gen/types.gen.js';
import { zGetUsageQuery } from '../gen/zod.gen.js';
import { requireAuth } from '../http/authenticate.js';
import type { AppState, Principal } from '../http/context.js';
import { permissionDenied } from '../http/errors.js';
import { createRouter } from '../http/router.js';
import { validate } from '../http/validate.js';
import type { UsageDimension, UsageQuery } from '../store/types.js';
import type { RouteDeps } from './deps.js';

type Query = NonNullable<GetUsageData['query']>;

/**
 * The filter a principal may ask for: with `read_metrics` and `manage_users` any (everyone's usage
 * shows other users' ids and activity, which is user-management data); otherwise only its own (a
 * login session: its user's; an API key: that key's), and naming anyone else's is refused.
 */
function scope(principal: Principal, query: Query): Pick<UsageQuery, 'userId' | 'keyId'> {
  if (seesEveryone(principal)) return { userId: query.user_id, keyId: query.key_id };
  const own = principal.user.id;
  if (query.user_id !== undefined && query.user_id !== own) throw permissionDenied(`Another user's usage needs ${EVERYONE}`);
  const key = principal.apiKey?.id;
  if (key === undefined) return { userId: own, keyId: query.key_id };
  if (query.key_id !== undefined && query.key_id !== key) throw permissionDenied(`Another key's usage needs ${EVERYONE}`);
  return { userId: own, keyId: key };
}

const EVERYONE = 'read_metrics and manage_users';
const seesEveryone = (principal: Principal) => principal.permissions.includes('read_metrics') && principal.permissions.includes('manage_users');

/** `GET /api/v1/usage`: requests and tokens from the store, after writing what is still batched. */
export function usageRoutes(deps: RouteDeps): Router<AppState> {
  const router = createRouter();
  router.get('/usage', requireAuth, validate({ query: zGetUsageQuery }), async (ctx) => {
    const query = ctx.state.input.query as Query;
    const groupBy = query.group_by ? ([...new Set(query.group_by.split(','))] as UsageDimension[]) : [];
    const filter: UsageQuery = { ...scope(ctx.state.principal!, query), model: query.model, since: query.since, until: query.until, groupBy };
    // What this server has batched but not written yet is part of the answer.
    await deps.telemetry.usage?.flush();
    const rows = await deps.store.queryUsage(filter);
    ctx.body = {
      group_by: groupBy,
      data: rows.map((r) => ({
        user_id: r.userId,
        key_id: r.keyId,
        model: r.model,
        day: r.day,
        requests: r.requests,
        prompt_tokens: r.promptTokens,
        completion_tokens: r.completionTokens,
        total_tokens: r.promptTokens + r.completionTokens,
      })),
    } satisfies UsageReport;
  });
  return router;
}
