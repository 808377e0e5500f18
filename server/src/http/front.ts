import { randomUUID } from 'node:crypto';
import type { AppMiddleware } from './context.js';

const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The first middleware of every request, the headers every response carries, set in one place:
 * the request's id (the client's `X-Request-Id` when it sent a sane one, else a fresh UUID) echoed
 * in `X-Request-Id`; conservative headers for an API that serves JSON and event streams only
 * (`Strict-Transport-Security` too when served over HTTPS); and `Vary: Origin`, which the CORS
 * policy would add to every response anyway (its answers depend on the Origin header).
 */
export function front(options: { hsts: boolean }): AppMiddleware {
  return (ctx, next) => {
    const sent = ctx.req.headers['x-request-id'];
    const id = typeof sent === 'string' && CLIENT_ID.test(sent) ? sent : randomUUID();
    ctx.state.requestId = id;
    ctx.state.input = {};
    const res = ctx.res;
    res.setHeader('X-Request-Id', id);
    // Over HTTPS, browsers are told to use nothing else for a year (no subdomains: they are not ours to speak for).
    if (options.hsts) res.setHeader('Strict-Transport-Security', 'max-age=31536000');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Vary', 'Origin');
    return next();
  };
}
