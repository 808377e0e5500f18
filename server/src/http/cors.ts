import cors from '@koa/cors';
import type { AppMiddleware } from './context.js';
import { permissionDenied } from './errors.js';

export interface CorsSettings {
  origins: readonly string[];
  methods: readonly string[];
  headers: readonly string[];
}

// Browsers may only read response headers that are exposed: the SDK needs these in a page.
const EXPOSED = ['X-Request-Id', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset', 'Retry-After', 'Location', 'X-Cache', 'Idempotency-Replayed'];

/**
 * Cross-origin access for the configured origins only (none by default; `*` allows any).
 * A preflight from any other origin is refused outright rather than answered without headers.
 */
export function corsPolicy(settings: CorsSettings): AppMiddleware {
  const allowAny = settings.origins.includes('*');
  const allowed = new Set(settings.origins);
  const isAllowed = (origin: string) => origin !== '' && (allowAny || allowed.has(origin));
  const middleware = cors({
    origin: (ctx) => (isAllowed(ctx.get('Origin')) ? ctx.get('Origin') : ''),
    allowMethods: [...settings.methods],
    allowHeaders: [...settings.headers, 'X-Request-Id', 'Idempotency-Key'],
    exposeHeaders: EXPOSED,
    maxAge: 600,
    credentials: false,
  }) as unknown as AppMiddleware;

  return (ctx, next) => {
    const origin = ctx.get('Origin');
    // Without an Origin header a request is outside CORS: @koa/cors would only add `Vary: Origin`
    // (which `front` has set on every response) and hand on.
    if (!origin) return next();
    if (ctx.method === 'OPTIONS' && origin && ctx.get('Access-Control-Request-Method') && !isAllowed(origin)) {
      ctx.vary('Origin');
      throw permissionDenied('Cross-origin requests from this origin are not allowed');
    }
    return middleware(ctx, next);
  };
}
