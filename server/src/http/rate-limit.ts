import type { AuditStore } from '../store/types.js';
import type { RateLimiter } from '../limits/rate-limiter.js';
import type { AppContext, AppMiddleware } from './context.js';
import { ApiError } from './errors.js';

const WINDOW_MS = 60_000;

/** Whose budget a request spends: its API key, else its user, else its client IP. */
export function rateLimitKey(ctx: AppContext): string {
  const principal = ctx.state.principal;
  if (principal?.apiKey) return `key:${principal.apiKey.id}`;
  if (principal) return `user:${principal.user.id}`;
  return `ip:${ctx.ip}`;
}

/**
 * Per-principal limit per minute. Every response carries `X-RateLimit-*`; a refusal is 429
 * `RATE_LIMITED` with `Retry-After` in whole seconds.
 */
export function rateLimit(options: {
  limiter: RateLimiter;
  audit: AuditStore;
  enabled: () => boolean;
  requestsPerMinute: () => number;
}): AppMiddleware {
  return async (ctx, next) => {
    if (!options.enabled()) return next();
    const now = Date.now();
    const decision = options.limiter.hit(rateLimitKey(ctx), options.requestsPerMinute(), WINDOW_MS, now);
    ctx.set('X-RateLimit-Limit', String(decision.limit));
    ctx.set('X-RateLimit-Remaining', String(decision.remaining));
    ctx.set('X-RateLimit-Reset', String(Math.ceil(decision.resetAt / 1000)));
    if (!decision.allowed) {
      const retryAfter = Math.max(1, Math.ceil((decision.resetAt - now) / 1000));
      options.audit.recordAudit({
        action: 'rate_limit.refused',
        outcome: 'denied',
        actorUserId: ctx.state.principal?.user.id ?? null,
        actorKeyId: ctx.state.principal?.apiKey?.id ?? null,
        target: `${ctx.method} ${ctx.path}`,
        ip: ctx.ip,
        requestId: ctx.state.requestId,
      });
      throw new ApiError(
        'RATE_LIMITED',
        `Rate limit of ${decision.limit} requests per minute exceeded; retry in ${retryAfter} s`,
        { limit: decision.limit, retry_after_seconds: retryAfter },
        { 'Retry-After': String(retryAfter) },
      );
    }
    await next();
  };
}
