import type { Router } from '@koa/router';
import { createRouter } from '../http/router.js';
import { generateApiKey } from '../auth/api-keys.js';
import { issueToken } from '../auth/jwt.js';
import { decoyHash, verifyPassword } from '../auth/passwords.js';
import { canonicalPermissions } from '../auth/permissions.js';
import type { CreateApiKeyRequest, ListApiKeysData, LoginRequest } from '../gen/types.gen.js';
import { zCreateApiKeyBody, zListApiKeysQuery, zLoginBody, zRevokeApiKeyPath } from '../gen/zod.gen.js';
import { audit } from '../http/audit.js';
import { requireAuth, requirePermission } from '../http/authenticate.js';
import type { AppContext, AppMiddleware, AppState } from '../http/context.js';
import { ApiError, authenticationFailed, conflict, notFound, permissionDenied, validationError } from '../http/errors.js';
import { redactText } from '../logging/redact.js';
import { jsonBody } from '../http/json-body.js';
import { validate } from '../http/validate.js';
import type { RouteDeps } from './deps.js';
import { presentApiKey, presentUser } from './presenters.js';
import { KeyLimitError } from '../store/types.js';

const DAY_MS = 86_400_000;

export function authRoutes(deps: RouteDeps): Router<AppState> {
  const { store, config, loginThrottle } = deps;
  const body = jsonBody(() => config.limits.max_body_bytes);
  // Credentials are tiny: a login body is refused beyond 4 KB, before anyone is authenticated.
  const loginBody = jsonBody(() => Math.min(4096, config.limits.max_body_bytes));
  const router = createRouter();

  router.post('/auth/login', loginBody, validate({ body: zLoginBody }), async (ctx) => {
    const { username, password } = ctx.state.input.body as LoginRequest;
    const user = await store.getUserByUsername(username);
    // Only an existing username is written to the audit log: a password typed into the username
    // field must not end up stored.
    const target = user ? user.username : null;
    // An existing user's failures are counted per session version: a password reset (which bumps
    // it, also from the CLI in another process) ends that user's lockouts at once.
    const subject = user ? `${user.username}\u0000${user.sessionVersion}` : username;
    const { retryAfter: wait, delayMs } = await loginThrottle.check(subject, ctx.ip);
    if (wait > 0) {
      deps.telemetry.loginLockedOut();
      await audit(store, ctx, { action: 'auth.login', outcome: 'denied', target, details: { reason: 'throttled' } });
      throw new ApiError('RATE_LIMITED', `Too many failed logins; retry in ${wait} s`, { retry_after_seconds: wait }, { 'Retry-After': String(wait) });
    }
    // A username under attack from many addresses answers slowly, never not at all.
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    // Verify against a decoy when the user does not exist: same work, same time, same answer.
    const valid = await verifyPassword(password, user?.passwordHash ?? (await decoyHash()));
    if (!user || !valid || user.disabled) {
      await loginThrottle.recordFailure(subject, ctx.ip);
      await audit(store, ctx, { action: 'auth.login', outcome: 'failure', target, actorUserId: null });
      throw authenticationFailed('Invalid username or password');
    }
    await loginThrottle.recordSuccess(subject, ctx.ip);
    const { token, claims } = issueToken(user, deps.jwtSecret, config.auth.token_ttl_seconds);
    await audit(store, ctx, { action: 'auth.login', outcome: 'success', target: user.username, actorUserId: user.id });
    ctx.body = { token, expires_at: new Date(claims.exp * 1000).toISOString() };
  });

  router.post('/auth/logout', requireAuth, async (ctx) => {
    const { token } = ctx.state.principal!;
    if (!token) throw authenticationFailed('Logout ends a JWT session; revoke API keys with DELETE /api/v1/auth/api-keys/{id}');
    await store.revokeToken(token.jti, token.exp * 1000);
    await audit(store, ctx, { action: 'auth.logout', outcome: 'success', target: ctx.state.principal!.user.username });
    ctx.status = 204;
  });

  router.get('/auth/me', requireAuth, (ctx) => {
    const principal = ctx.state.principal!;
    ctx.body = {
      user: presentUser(principal.user),
      auth_method: principal.method,
      permissions: [...principal.permissions],
      api_key: principal.apiKey ? presentApiKey(principal.apiKey) : null,
      token_expires_at: principal.token ? new Date(principal.token.exp * 1000).toISOString() : null,
    };
  });

  router.post('/auth/api-keys', requireAuth, keyManagement, body, validate({ body: zCreateApiKeyBody }), async (ctx) => {
    const request = ctx.state.input.body as CreateApiKeyRequest;
    // The spec says uniqueItems (found by the contract kit; the generated zod schema does not check it).
    const repeated = request.permissions.findIndex((p, i) => request.permissions.indexOf(p) !== i);
    if (repeated >= 0) throw validationError([{ path: `body.permissions[${repeated}]`, message: 'Each permission may appear only once' }]);
    const principal = ctx.state.principal!;
    const missing = request.permissions.filter((p) => !principal.permissions.includes(p));
    if (missing.length > 0) {
      await audit(store, ctx, { action: 'api_key.create', outcome: 'denied', target: null, details: { name: redactText(request.name), missing } });
      throw permissionDenied(`A key cannot carry permissions its creator lacks: ${missing.join(', ')}`);
    }
    // The store counts and creates in one transaction: two concurrent requests cannot both pass the cap.
    const cap = config.auth.max_keys_per_user;
    const generated = generateApiKey();
    const record = await store.createApiKey({
      userId: principal.user.id,
      name: request.name,
      prefix: generated.prefix,
      keyHash: generated.hash,
      permissions: canonicalPermissions(request.permissions),
      expiresAt: childExpiry(request.expires_in_days, principal.apiKey?.expiresAt ?? null),
      rateLimitPerMinute: childRateLimit(request.rate_limit_per_minute, principal.apiKey?.rateLimitPerMinute ?? null),
    }, { maxActive: cap }).catch(async (error: unknown) => {
      if (!(error instanceof KeyLimitError)) throw error;
      const { active } = error;
      await audit(store, ctx, { action: 'api_key.create', outcome: 'denied', target: null, details: { reason: 'max_keys_per_user', active, limit: cap } });
      throw conflict(`This user already has ${active} active API keys, the limit ([auth] max_keys_per_user is ${cap}); revoke one first`);
    });
    // The name is the user's free text (it may hold an email address): redacted as in the logs.
    await audit(store, ctx, { action: 'api_key.create', outcome: 'success', target: record.id, details: { name: redactText(record.name), permissions: record.permissions } });
    ctx.status = 201;
    ctx.body = { ...presentApiKey(record), key: generated.key };
  });

  router.get('/auth/api-keys', requireAuth, keyManagement, validate({ query: zListApiKeysQuery }), async (ctx) => {
    const query = (ctx.state.input.query ?? {}) as NonNullable<ListApiKeysData['query']>;
    const userId = query.user_id ?? ctx.state.principal!.user.id;
    await ownOrManageUsers(ctx, userId, deps);
    if (!(await store.getUser(userId))) throw notFound('No user with this id');
    ctx.body = { data: (await store.listApiKeys(userId)).map(presentApiKey) };
  });

  router.delete('/auth/api-keys/:id', requireAuth, keyManagement, validate({ params: zRevokeApiKeyPath }), async (ctx) => {
    const { id } = ctx.state.input.params as { id: string };
    const key = await store.getApiKey(id);
    if (!key || key.revokedAt) throw notFound('No API key with this id');
    await ownOrManageUsers(ctx, key.userId, deps);
    await store.revokeApiKey(id);
    await audit(store, ctx, { action: 'api_key.revoke', outcome: 'success', target: id, details: { owner_user_id: key.userId } });
    ctx.status = 204;
  });

  return router;
}

/**
 * API keys are managed from a login session. A key may manage keys only with `manage_users`:
 * otherwise any narrow key could list and revoke its owner's keys, or mint keys that outlive it.
 */
const keyManagement: AppMiddleware = async (ctx, next) => {
  const principal = ctx.state.principal!;
  if (principal.method === 'api_key' && !principal.permissions.includes('manage_users')) {
    throw permissionDenied('Managing API keys needs a login session (JWT), or an API key with manage_users');
  }
  await next();
};

/** A key made by a key never outlives it. */
function childExpiry(days: number | undefined, parentExpiresAt: string | null): string | null {
  const requested = days ? Date.now() + days * DAY_MS : Infinity;
  const limit = parentExpiresAt ? Date.parse(parentExpiresAt) : Infinity;
  const expires = Math.min(requested, limit);
  return Number.isFinite(expires) ? new Date(expires).toISOString() : null;
}

/** A key made by a key never has a larger budget of its own. */
function childRateLimit(requested: number | undefined, parent: number | null): number | null {
  if (requested === undefined) return parent;
  return parent === null ? requested : Math.min(requested, parent);
}

/** Passes for the caller's own resources; another user's need `manage_users`. */
async function ownOrManageUsers(ctx: AppContext, ownerId: string, deps: RouteDeps): Promise<void> {
  if (ownerId === ctx.state.principal!.user.id) return;
  await requirePermission(deps.store, 'manage_users')(ctx, async () => undefined);
}
