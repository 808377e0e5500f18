import type { AppMiddleware } from './context.js';

/** Conservative headers for an API that serves JSON and event streams only. */
export function securityHeaders(options: { hsts: boolean }): AppMiddleware {
  return async (ctx, next) => {
    // Over HTTPS, browsers are told to use nothing else for a year (no subdomains: they are not ours to speak for).
    if (options.hsts) ctx.set('Strict-Transport-Security', 'max-age=31536000');
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Referrer-Policy', 'no-referrer');
    await next();
  };
}
