import { createHash } from 'node:crypto';
import type { IdempotencyStore } from '../store/types.js';
import type { AppContext, AppMiddleware } from './context.js';
import { DISCARD_LIMIT_BYTES, discardRest } from './discard-body.js';
import { ApiError, validationError } from './errors.js';
import { readBody } from './json-body.js';

/** The POST routes that take an `Idempotency-Key` (the spec's `IdempotencyKey` parameter). */
const IDEMPOTENT_ROUTES: ReadonlySet<string> = new Set([
  '/api/v1/users',
  '/api/v1/auth/api-keys',
  '/api/v1/jobs',
  '/api/v1/models',
  '/api/v1/inference',
  '/api/v1/embeddings',
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
]);

// Visible ASCII, as the spec says: a UUID fits, and nothing that could smuggle a header.
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;
// Responses larger than this are answered but not kept (a repeat then runs again).
const MAX_STORED_BYTES = 1_048_576;
// The response headers worth replaying: those that describe the body.
const REPLAYED_HEADERS = ['content-type', 'location'];
const SWEEP_EVERY_MS = 60_000;

export interface IdempotencySettings {
  store: IdempotencyStore;
  ttlSeconds: () => number;
  maxPerPrincipal: () => number;
  maxBodyBytes: () => number;
}

/**
 * Exactly-once POSTs: the first request with a given `Idempotency-Key` (per credential) runs, and
 * its 2xx response is stored for `ttl_seconds`; a repeat with the same method, path, query and
 * body gets that response again with `Idempotency-Replayed: true`, without running. A repeat with
 * another request is 409 CONFLICT (`details.reason: "idempotency_key_reused"`), and so is one that
 * arrives while the first still runs (`"idempotency_key_in_flight"`, with `Retry-After`). Error
 * responses and event streams are not stored: the key is released and a repeat runs again.
 * Uploads are fingerprinted by their query and `Content-Length`, not their bytes.
 */
export function idempotency(settings: IdempotencySettings): AppMiddleware {
  let lastSweep = 0;
  return async (ctx, next) => {
    const key = ctx.get('Idempotency-Key');
    if (ctx.method !== 'POST' || key === '' || !IDEMPOTENT_ROUTES.has(ctx.path)) return next();
    const principal = ctx.state.principal;
    // Without a principal the route refuses the request anyway; keys are scoped to credentials.
    if (!principal) return next();
    if (!KEY_PATTERN.test(key)) {
      throw validationError(
        [{ path: 'header.Idempotency-Key', message: 'must be 1 to 255 visible ASCII characters (a UUID fits)' }],
        'The Idempotency-Key header is malformed',
      );
    }
    const scope = principal.apiKey ? `key:${principal.apiKey.id}` : `user:${principal.user.id}`;
    const fingerprint = await fingerprintOf(ctx, settings.maxBodyBytes());
    const now = Date.now();
    if (now - lastSweep > SWEEP_EVERY_MS) {
      lastSweep = now;
      await settings.store.sweepIdempotencyKeys(now);
    }
    const existing = await settings.store.claimIdempotencyKey(scope, key, {
      fingerprint,
      now,
      ttlMs: settings.ttlSeconds() * 1000,
      maxPerScope: settings.maxPerPrincipal(),
    });
    if (existing) {
      if (existing.fingerprint !== fingerprint) {
        throw new ApiError('CONFLICT', 'This Idempotency-Key was used for another request; use a new key for a new request', {
          reason: 'idempotency_key_reused',
        });
      }
      if (existing.state === 'pending' || !existing.response) {
        throw new ApiError(
          'CONFLICT',
          'A request with this Idempotency-Key is still running; retry once it has finished',
          { reason: 'idempotency_key_in_flight' },
          { 'Retry-After': '1' },
        );
      }
      skipBody(ctx);
      ctx.status = existing.response.status;
      for (const [name, value] of Object.entries(existing.response.headers)) ctx.set(name, value);
      ctx.set('Idempotency-Replayed', 'true');
      ctx.body = existing.response.body;
      return;
    }
    let stored = false;
    try {
      await next();
      const body = storableBody(ctx);
      if (body !== undefined) {
        const headers: Record<string, string> = {};
        for (const name of REPLAYED_HEADERS) {
          const value = ctx.response.get(name);
          if (value) headers[name] = value;
        }
        await settings.store.completeIdempotencyKey(scope, key, { status: ctx.status, headers, body });
        stored = true;
      }
    } finally {
      if (!stored) await settings.store.releaseIdempotencyKey(scope, key);
    }
  };
}

/** What identifies the request: method, path, query and body (an upload's: its length). */
async function fingerprintOf(ctx: AppContext, maxBodyBytes: number): Promise<string> {
  const hash = createHash('sha256').update(`${ctx.method} ${ctx.path}?${ctx.querystring}\n`);
  if (ctx.is('application/json')) hash.update(await readBody(ctx, maxBodyBytes));
  else hash.update(`${ctx.get('Content-Type')} ${ctx.get('Content-Length')}`);
  return hash.digest('base64url');
}

/** The body of a 2xx response as text, or `undefined` when it is not kept (stream, too large, error). */
function storableBody(ctx: AppContext): string | undefined {
  if (ctx.status < 200 || ctx.status >= 300 || ctx.respond === false) return undefined;
  const body: unknown = ctx.body;
  let text: string;
  if (body === null || body === undefined) text = '';
  else if (typeof body === 'string') text = body;
  else if (Buffer.isBuffer(body)) text = body.toString('utf8');
  else if (typeof (body as { pipe?: unknown }).pipe === 'function') return undefined;
  else text = JSON.stringify(body);
  return Buffer.byteLength(text) > MAX_STORED_BYTES ? undefined : text;
}

/** A replayed upload's bytes are not needed: drop them (or close after answering a huge one). */
function skipBody(ctx: AppContext): void {
  if (ctx.state.rawBody || ctx.req.readableEnded) return;
  if (Number(ctx.get('Content-Length') || 0) > DISCARD_LIMIT_BYTES) ctx.set('Connection', 'close');
  else discardRest(ctx.req);
}
