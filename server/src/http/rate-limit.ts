import type { AuditStore } from '../store/types.js';
import type { RateLimiter } from '../limits/rate-limiter.js';
import { requestTarget } from './audit.js';
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
  /** Told of each refusal (the metrics). */
  onRefused?: (ctx: AppContext) => void;
}): AppMiddleware {
  // The first refusal of each key's window is audited, not every one: a client hammering away
  // must not turn each refused request into a database write.
  const audited = new Map<string, number>();
  return async (ctx, next) => {
    if (!options.enabled()) return next();
    const now = Date.now();
    const key = rateLimitKey(ctx);
    const decision = options.limiter.hit(key, options.requestsPerMinute(), WINDOW_MS, now);
    ctx.set('X-RateLimit-Limit', String(decision.limit));
    ctx.set('X-RateLimit-Remaining', String(decision.remaining));
    ctx.set('X-RateLimit-Reset', String(Math.ceil(decision.resetAt / 1000)));
    if (!decision.allowed) {
      options.onRefused?.(ctx);
      const retryAfter = Math.max(1, Math.ceil((decision.resetAt - now) / 1000));
      if (audited.get(key) !== decision.resetAt) {
        if (audited.size > 10_000) for (const [k, resetAt] of audited) if (resetAt <= now) audited.delete(k);
        audited.set(key, decision.resetAt);
        options.audit.recordAudit({
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
        `Rate limit of ${decision.limit} requests per minute exceeded; retry in ${retryAfter} s`,
        { limit: decision.limit, retry_after_seconds: retryAfter },
        { 'Retry-After': String(retryAfter) },
      );
    }
    await next();
  };
}
