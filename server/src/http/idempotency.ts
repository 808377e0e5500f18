import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import type { IdempotencyStore, StoredResponse } from '../store/types.js';
import type { AppContext, AppMiddleware } from './context.js';
import { DISCARD_LIMIT_BYTES, discardRest } from './discard-body.js';
import { ApiError, validationError } from './errors.js';
import { readBody } from './json-body.js';
import { JsonShapeScanner } from './json-shape.js';

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
// The response headers worth replaying: those that describe the body.
const REPLAYED_HEADERS = ['content-type', 'location'];
const SWEEP_EVERY_MS = 60_000;

export interface IdempotencySettings {
  store: IdempotencyStore;
  ttlSeconds: () => number;
  maxPerPrincipal: () => number;
  maxBodyBytes: () => number;
  /** Responses larger than this (their body, in bytes) are answered but not kept: a repeat runs again. */
  maxResponseBytes: () => number;
  /** The server's secret (the JWT secret): with the raw `Idempotency-Key`, it derives each record's key. */
  secret: Buffer;
}

/**
 * Exactly-once POSTs: the first request with a given `Idempotency-Key` (per credential) runs, and
 * its 2xx response is stored for `ttl_seconds`; a repeat with the same method, path, query and
 * body gets that response again with `Idempotency-Replayed: true`, without running. A repeat with
 * another request is 409 CONFLICT (`details.reason: "idempotency_key_reused"`), and so is one that
 * arrives while the first still runs (`"idempotency_key_in_flight"`, with `Retry-After`). Error
 * responses and event streams are not stored: the key is released and a repeat runs again.
 * Uploads are fingerprinted by their query and `Content-Length`, not their bytes.
 *
 * The store never sees the raw key or a readable response: a record is filed under the key's
 * SHA-256, its fingerprint is an HMAC, and its headers and body are sealed with AES-256-GCM under a
 * key derived (HKDF-SHA256) from the server secret, the credential's scope and the raw key. Only a
 * caller that holds the key (sent once per logical call, never stored) can have the replay, and a
 * database at rest holds neither created API key secrets nor generated text in clear.
 */
export function idempotency(settings: IdempotencySettings): AppMiddleware {
  let lastSweep = 0;
  const claimed: AppMiddleware = async (ctx, next) => {
    const rawKey = ctx.get('Idempotency-Key');
    const principal = ctx.state.principal;
    // Without a principal the route refuses the request anyway; keys are scoped to credentials.
    if (!principal) return next();
    if (!KEY_PATTERN.test(rawKey)) {
      throw validationError(
        [{ path: 'header.Idempotency-Key', message: 'must be 1 to 255 visible ASCII characters (a UUID fits)' }],
        'The Idempotency-Key header is malformed',
      );
    }
    const scope = principal.apiKey ? `key:${principal.apiKey.id}` : `user:${principal.user.id}`;
    const sealing = recordKey(settings.secret, scope, rawKey);
    const fingerprint = await fingerprintOf(ctx, sealing, settings.maxBodyBytes());
    // What the store files the record under: not the key itself, which unlocks the response.
    const key = createHash('sha256').update(rawKey).digest('base64url');
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
      // Unreadable (the server secret changed since: then the fingerprint differs too) is as reused.
      const replay = existing.response && openRecord(sealing, scope, existing.response);
      if (existing.fingerprint !== fingerprint || (existing.response && !replay)) {
        throw new ApiError('CONFLICT', 'This Idempotency-Key was used for another request; use a new key for a new request', {
          reason: 'idempotency_key_reused',
        });
      }
      if (existing.state === 'pending' || !replay) {
        throw new ApiError(
          'CONFLICT',
          'A request with this Idempotency-Key is still running; retry once it has finished',
          { reason: 'idempotency_key_in_flight' },
          { 'Retry-After': '1' },
        );
      }
      skipBody(ctx);
      ctx.status = existing.response!.status;
      for (const [name, value] of Object.entries(replay.headers)) ctx.set(name, value);
      ctx.set('Idempotency-Replayed', 'true');
      ctx.body = replay.body;
      return;
    }
    let stored = false;
    try {
      await next();
      const body = storableBody(ctx, settings.maxResponseBytes());
      if (body !== undefined) {
        const headers: Record<string, string> = {};
        for (const name of REPLAYED_HEADERS) {
          const value = ctx.response.get(name);
          if (value) headers[name] = value;
        }
        await settings.store.completeIdempotencyKey(scope, key, seal(sealing, scope, ctx.status, { headers, body }));
        stored = true;
      }
    } finally {
      if (!stored) await settings.store.releaseIdempotencyKey(scope, key);
    }
  };
  // Everything but a POST to one of those routes with the header hands on at once (no promise of its own).
  return (ctx, next) => (ctx.method === 'POST' && IDEMPOTENT_ROUTES.has(ctx.path) && ctx.get('Idempotency-Key') !== '' ? claimed(ctx, next) : next());
}

/**
 * What identifies the request: method, path, query and body (an upload's: its length), as an HMAC
 * under the record's key (a plain hash of a short body could be guessed back from the store). A
 * JSON body is shape-checked as it streams in, as `jsonBody` would: too deep is refused early.
 */
async function fingerprintOf(ctx: AppContext, sealing: Buffer, maxBodyBytes: number): Promise<string> {
  const hash = createHmac('sha256', sealing).update(`${ctx.method} ${ctx.path}?${ctx.querystring}\n`);
  if (ctx.is('application/json')) hash.update(await readBody(ctx, maxBodyBytes, new JsonShapeScanner()));
  else hash.update(`${ctx.get('Content-Type')} ${ctx.get('Content-Length')}`);
  return hash.digest('base64url');
}

/** The key that seals one record: HKDF-SHA256 over the server secret, salted with the raw key, bound to the scope. */
export function recordKey(secret: Buffer, scope: string, rawKey: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, rawKey, `inferno idempotency v1 ${scope}`, 32));
}

/** The part of a stored response that is sealed. */
interface Sealed {
  headers: Record<string, string>;
  body: string;
}

const SEALED_PREFIX = 'v1.';

/** Seals headers and body with AES-256-GCM (random 96-bit nonce; scope and status authenticated). */
function seal(sealing: Buffer, scope: string, status: number, content: Sealed): StoredResponse {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', sealing, iv).setAAD(Buffer.from(`${scope}\n${status}`));
  const data = Buffer.concat([cipher.update(JSON.stringify(content), 'utf8'), cipher.final()]);
  return { status, headers: {}, body: SEALED_PREFIX + Buffer.concat([iv, cipher.getAuthTag(), data]).toString('base64') };
}

/** The sealed part of a stored response, or `undefined` when this key cannot open it. */
export function openRecord(sealing: Buffer, scope: string, stored: StoredResponse): Sealed | undefined {
  if (!stored.body.startsWith(SEALED_PREFIX)) return undefined;
  const raw = Buffer.from(stored.body.slice(SEALED_PREFIX.length), 'base64');
  if (raw.length < 28) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', sealing, raw.subarray(0, 12)).setAAD(Buffer.from(`${scope}\n${stored.status}`));
    decipher.setAuthTag(raw.subarray(12, 28));
    const text = Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
    return JSON.parse(text) as Sealed;
  } catch {
    return undefined;
  }
}

/** The body of a 2xx response as text, or `undefined` when it is not kept (stream, too large, error). */
function storableBody(ctx: AppContext, maxBytes: number): string | undefined {
  if (ctx.status < 200 || ctx.status >= 300 || ctx.respond === false) return undefined;
  const body: unknown = ctx.body;
  let text: string;
  if (body === null || body === undefined) text = '';
  else if (typeof body === 'string') text = body;
  else if (Buffer.isBuffer(body)) text = body.toString('utf8');
  else if (typeof (body as { pipe?: unknown }).pipe === 'function') return undefined;
  else text = JSON.stringify(body);
  return Buffer.byteLength(text) > maxBytes ? undefined : text;
}

/** A replayed upload's bytes are not needed: drop them (or close after answering a huge one). */
function skipBody(ctx: AppContext): void {
  if (ctx.state.rawBody || ctx.req.readableEnded) return;
  if (Number(ctx.get('Content-Length') || 0) > DISCARD_LIMIT_BYTES) ctx.set('Connection', 'close');
  else discardRest(ctx.req);
}
