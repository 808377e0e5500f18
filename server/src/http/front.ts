import type { IncomingMessage } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AppMiddleware } from './context.js';

const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request's id: the client's `X-Request-Id` when it sent a sane one, else a fresh UUID. */
export function requestIdOf(req: IncomingMessage): string {
  const sent = req.headers['x-request-id'];
  return typeof sent === 'string' && CLIENT_ID.test(sent) ? sent : randomUUID();
}

/**
 * The headers every response carries besides its `X-Request-Id`, in the order they are sent:
 * conservative ones for an API that serves JSON and event streams only (`Strict-Transport-Security`
 * too when served over HTTPS), and `Vary: Origin`, which the CORS policy would add to every
 * response anyway (its answers depend on the Origin header).
 */
export function standardHeaders(options: { hsts: boolean }): readonly (readonly [string, string])[] {
  return [
    // Over HTTPS, browsers are told to use nothing else for a year (no subdomains: they are not ours to speak for).
    ...(options.hsts ? [['Strict-Transport-Security', 'max-age=31536000'] as const] : []),
    ['X-Content-Type-Options', 'nosniff'],
    ['Cache-Control', 'no-store'],
    ['Referrer-Policy', 'no-referrer'],
    ['Vary', 'Origin'],
  ];
}

/**
 * The first middleware of every request, the headers every response carries, set in one place:
 * the request's id (`requestIdOf`) echoed in `X-Request-Id`, then `standardHeaders`.
 */
export function front(options: { hsts: boolean }): AppMiddleware {
  const headers = standardHeaders(options);
  return (ctx, next) => {
    const id = requestIdOf(ctx.req);
    ctx.state.requestId = id;
    ctx.state.input = {};
    const res = ctx.res;
    res.setHeader('X-Request-Id', id);
    for (const [name, value] of headers) res.setHeader(name, value);
    return next();
  };
}
