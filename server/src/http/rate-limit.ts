import type { AuditStore } from '../store/types.js';
import type { RateLimitDecision, RateLimiter } from '../limits/rate-limiter.js';
import { requestTarget } from './audit.js';
import type { AppContext, AppMiddleware } from './context.js';
import { ApiError } from './errors.js';

/**
 * The budgets a request spends: its user's (one budget for all of the user's keys and sessions),
 * plus its API key's own when the key has a lower `rate_limit_per_minute`; without credentials,
 * its client IP's.
 */
export function rateLimitBudgets(ctx: AppContext, requestsPerMinute: number): { key: string; limit: number }[] {
  const principal = ctx.state.principal;
  if (!principal) return [{ key: `ip:${ctx.ip}`, limit: requestsPerMinute }];
  const budgets = [{ key: `user:${principal.user.id}`, limit: requestsPerMinute }];
  const own = principal.apiKey?.rateLimitPerMinute;
  if (own != null && own < requestsPerMinute) budgets.unshift({ key: `key:${principal.apiKey!.id}`, limit: own });
  return budgets;
}

/**
 * Per-user limit per window (a minute unless `windowSeconds` says otherwise; per IP without
 * credentials). Every response carries `X-RateLimit-*` for the tightest budget; a refusal is 429
 * `RATE_LIMITED` with `Retry-After` in whole seconds.
 */
export function rateLimit(options: {
  limiter: RateLimiter;
  audit: AuditStore;
  enabled: () => boolean;
  requestsPerMinute: () => number;
  /** The window's length; 60 s when not given. */
  windowSeconds?: () => number;
  /** Told of each refusal (the metrics). */
  onRefused?: (ctx: AppContext) => void;
}): AppMiddleware {
  // The first refusal of each key's window is audited, not every one: a client hammering away
  // must not turn each refused request into a database write.
  const audited = new Map<string, number>();
  return async (ctx, next) => {
    if (!options.enabled()) return next();
    // The key's own (lower) budget first: a request it refuses does not spend the user's. One the
    // user's budget refuses gives the key's unit back: a refused request spends no budget at all.
    const windowSeconds = options.windowSeconds?.() ?? 60;
    const windowMs = windowSeconds * 1000;
    let decision: RateLimitDecision | undefined;
    let key = '';
    const spent: string[] = [];
    for (const budget of rateLimitBudgets(ctx, options.requestsPerMinute())) {
      const result = await options.limiter.hit(budget.key, budget.limit, windowMs);
      if (!decision || !result.allowed || result.remaining < decision.remaining) [decision, key] = [result, budget.key];
      if (!result.allowed) {
        await Promise.all(spent.map((earlier) => options.limiter.refund(earlier, windowMs)));
        break;
      }
      spent.push(budget.key);
    }
    if (!decision) return next(); // never: every request has a budget
    const now = Date.now();
    ctx.set('X-RateLimit-Limit', String(decision.limit));
    ctx.set('X-RateLimit-Remaining', String(decision.remaining));
    ctx.set('X-RateLimit-Reset', String(Math.ceil(decision.resetAt / 1000)));
    if (!decision.allowed) {
      options.onRefused?.(ctx);
      const retryAfter = Math.max(1, Math.ceil((decision.resetAt - now) / 1000));
      const windowEnd = Math.ceil(decision.resetAt / 1000) * 1000;
      if (audited.get(key) !== windowEnd) {
        if (audited.size > 10_000) for (const [k, resetAt] of audited) if (resetAt <= now) audited.delete(k);
        audited.set(key, windowEnd);
        await options.audit.recordAudit({
          action: 'rate_limit.refused',
          outcome: 'denied',
          actorUserId: ctx.state.principal?.user.id ?? null,
          actorKeyId: ctx.state.principal?.apiKey?.id ?? null,
          target: requestTarget(ctx),
          ip: ctx.ip,
          requestId: ctx.state.requestId,
          details: { note: 'first refusal in this window; later ones are not recorded' },
        });
      }
      throw new ApiError(
        'RATE_LIMITED',
        `Rate limit of ${decision.limit} requests per ${windowSeconds === 60 ? 'minute' : `${windowSeconds} s`} exceeded; retry in ${retryAfter} s`,
        { limit: decision.limit, retry_after_seconds: retryAfter },
        { 'Retry-After': String(retryAfter) },
      );
    }
    await next();
  };
}
