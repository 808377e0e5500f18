import { canonicalPermissions, ROLE_PERMISSIONS } from '../auth/permissions.js';
import { hashApiKey, looksLikeApiKey } from '../auth/api-keys.js';
import { jwtVerifier } from '../auth/jwt.js';
import type { ApiKeyRecord, Store, UserRecord } from '../store/types.js';
import { requestTarget } from './audit.js';
import type { AppContext, AppMiddleware, Principal } from './context.js';
import { authenticationFailed, permissionDenied } from './errors.js';
import type { Permission } from '../gen/types.gen.js';

type Credential = { kind: 'api_key'; value: string } | { kind: 'jwt'; value: string } | { kind: 'none' } | { kind: 'malformed' };

/** `X-API-Key: <key>`, or `Authorization: Bearer <jwt>`; a Bearer `inf_…` value is an API key (OpenAI clients send keys that way). */
export function readCredential(ctx: AppContext): Credential {
  const apiKey = ctx.get('X-API-Key');
  if (apiKey) return { kind: 'api_key', value: apiKey.trim() };
  const authorization = ctx.get('Authorization');
  if (!authorization) return { kind: 'none' };
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match) return { kind: 'malformed' };
  const value = match[1]!;
  return value.startsWith('inf_') ? { kind: 'api_key', value } : { kind: 'jwt', value };
}

/**
 * Resolves the caller from an API key or a JWT (signature checked by `jwtVerifier`, revocation,
 * user and session version on every request) without refusing anything yet: a failure is noted
 * for `requireAuth`, so the rate limiter counts bad attempts against the client's IP before they
 * are answered.
 */
export function authenticate(options: { store: Store; secret: Buffer }): AppMiddleware {
  const { store } = options;
  const verifyJwt = jwtVerifier(options.secret);
  // What an API key's record (as the store answered it: a new object whenever it was read again)
  // and its owner's record make of a principal, kept while both are the very same objects.
  const principals = new WeakMap<ApiKeyRecord, { user: UserRecord; lastUsedAt: string; principal: Principal }>();

  const fromApiKey = async (ctx: AppContext, key: string) => {
    const record = looksLikeApiKey(key) ? await store.findApiKeyByHash(hashApiKey(key)) : undefined;
    if (!record || record.revokedAt) return fail(ctx, 'Invalid or revoked API key');
    if (record.expiresAt && Date.parse(record.expiresAt) <= Date.now()) return fail(ctx, 'The API key has expired');
    const user = await store.getUser(record.userId);
    if (!user || user.disabled) return fail(ctx, 'Invalid or revoked API key');
    // `last_used_at` is written at most once a minute per key: not a database write per request.
    const now = Date.now();
    const lastUsedAt = record.lastUsedAt && now - Date.parse(record.lastUsedAt) < 60_000 ? record.lastUsedAt : new Date(now).toISOString();
    if (lastUsedAt !== record.lastUsedAt) await store.touchApiKey(record.id, lastUsedAt);
    // The same key, owner and last use as the request before: the same (frozen) principal.
    const known = principals.get(record);
    if (known && known.user === user && known.lastUsedAt === lastUsedAt) {
      ctx.state.principal = known.principal;
      return;
    }
    // A key never grants more than its owner has now: demoting the owner narrows the key too.
    const owner = new Set<Permission>(ROLE_PERMISSIONS[user.role]);
    const principal: Principal = Object.freeze({
      user,
      method: 'api_key',
      apiKey: Object.freeze({ ...record, lastUsedAt }),
      permissions: Object.freeze(canonicalPermissions(record.permissions.filter((p) => owner.has(p)))),
    });
    principals.set(record, { user, lastUsedAt, principal });
    ctx.state.principal = principal;
  };

  const fromJwt = async (ctx: AppContext, token: string) => {
    const verified = verifyJwt(token);
    if ('refused' in verified) return fail(ctx, verified.refused);
    const { claims } = verified;
    if (typeof claims.jti !== 'string' || (await store.isTokenRevoked(claims.jti))) return fail(ctx, 'Invalid token');
    const user = typeof claims.sub === 'string' ? await store.getUser(claims.sub) : undefined;
    if (!user || user.disabled) return fail(ctx, 'Invalid token');
    if (claims.sv !== user.sessionVersion) return fail(ctx, 'The token has been revoked');
    ctx.state.principal = {
      user,
      method: 'jwt',
      permissions: ROLE_PERMISSIONS[user.role],
      token: { jti: claims.jti, exp: Number(claims.exp) },
    };
  };

  // A request's lookups run together: a cached store checks once for all of them.
  const lookingUp = (work: () => Promise<void>) => (store.together ? store.together(work) : work());

  return async (ctx, next) => {
    const credential = readCredential(ctx);
    switch (credential.kind) {
      case 'none':
        return next();
      case 'malformed':
        fail(ctx, 'Malformed Authorization header: use "Bearer <token>" or X-API-Key');
        return next();
      case 'api_key':
        await lookingUp(() => fromApiKey(ctx, credential.value));
        return next();
      case 'jwt':
        await lookingUp(() => fromJwt(ctx, credential.value));
        return next();
    }
  };
}

function fail(ctx: AppContext, reason: string): void {
  ctx.state.authFailure = reason;
}

/** Refuses requests without valid credentials (401). */
export const requireAuth: AppMiddleware = (ctx, next) => {
  if (!ctx.state.principal) throw authenticationFailed(ctx.state.authFailure ?? 'Authentication required: send a Bearer token or an X-API-Key');
  return next();
};

/** Refuses a principal without the permission (403), and records the denial in the audit log. */
export function requirePermission(store: Store, ...needed: Permission[]): AppMiddleware {
  const deny = async (ctx: AppContext, principal: Principal) => {
    const missing = needed.filter((p) => !principal.permissions.includes(p));
    await store.recordAudit({
      action: 'permission.denied',
      outcome: 'denied',
      actorUserId: principal.user.id,
      actorKeyId: principal.apiKey?.id ?? null,
      target: requestTarget(ctx),
      ip: ctx.ip,
      requestId: ctx.state.requestId,
      details: { missing },
    });
    throw permissionDenied(`Missing permission: ${missing.join(', ')}`);
  };
  return (ctx, next) => {
    const principal = ctx.state.principal;
    if (!principal) throw authenticationFailed(ctx.state.authFailure);
    for (const permission of needed) if (!principal.permissions.includes(permission)) return deny(ctx, principal);
    return next();
  };
}
