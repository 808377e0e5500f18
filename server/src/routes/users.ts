import type { Router } from '@koa/router';
import { createRouter } from '../http/router.js';
import { hashPassword } from '../auth/passwords.js';
import { ROLE_PERMISSIONS } from '../auth/permissions.js';
import type { CreateUserRequest, UpdateUserRequest } from '../gen/types.gen.js';
import { zCreateUserBody, zDeleteUserPath, zGetUserPath, zUpdateUserBody, zUpdateUserPath } from '../gen/zod.gen.js';
import { audit } from '../http/audit.js';
import { requireAuth, requirePermission } from '../http/authenticate.js';
import type { AppContext, AppState } from '../http/context.js';
import { conflict, notFound, permissionDenied, validationError } from '../http/errors.js';
import { jsonBody } from '../http/json-body.js';
import { validate } from '../http/validate.js';
import type { Role, Store, UserRecord } from '../store/types.js';
import type { RouteDeps } from './deps.js';
import { presentUser } from './presenters.js';

/** Whether the change would leave no enabled admin: the server must stay manageable. */
function removesLastAdmin(store: Store, user: UserRecord, after: { role: string; disabled: boolean } | null): boolean {
  if (user.role !== 'admin' || user.disabled) return false;
  if (after && after.role === 'admin' && !after.disabled) return false;
  return !store.listUsers().some((u) => u.id !== user.id && u.role === 'admin' && !u.disabled);
}

export function userRoutes(deps: RouteDeps): Router<AppState> {
  const { store } = deps;
  const body = jsonBody(() => deps.config.limits.max_body_bytes);
  const router = createRouter();
  router.use('/users', requireAuth, requirePermission(store, 'manage_users'));

  const findUser = (id: string) => {
    const user = store.getUser(id);
    if (!user) throw notFound('No user with this id');
    return user;
  };

  /**
   * `manage_users` is no way to more power: a caller may only create, change or delete users
   * whose role (before and after) holds no permission the caller lacks.
   */
  const checkRoleWithinCaller = (ctx: AppContext, role: Role, action: string) => {
    const principal = ctx.state.principal!;
    const missing = ROLE_PERMISSIONS[role].filter((p) => !principal.permissions.includes(p));
    if (missing.length === 0) return;
    audit(store, ctx, { action: 'permission.denied', outcome: 'denied', target: `${action} ${role}`, details: { missing } });
    throw permissionDenied(`Only a caller with every permission of the ${role} role may ${action} such a user; missing: ${missing.join(', ')}`);
  };

  /** SQLite's unique index is the last word on usernames, also for two requests racing. */
  const createOrConflict = (user: { username: string; passwordHash: string; role: Role }) => {
    try {
      return store.createUser(user);
    } catch (error) {
      if (/UNIQUE/i.test(String((error as Error).message))) throw conflict('A user with this username already exists');
      throw error;
    }
  };

  router.get('/users', (ctx) => {
    ctx.body = { data: store.listUsers().map(presentUser) };
  });

  router.post('/users', body, validate({ body: zCreateUserBody }), async (ctx) => {
    const request = ctx.state.input.body as CreateUserRequest;
    const role = request.role ?? 'user';
    checkRoleWithinCaller(ctx, role, 'create');
    if (store.getUserByUsername(request.username)) throw conflict('A user with this username already exists');
    const user = createOrConflict({ username: request.username, passwordHash: await hashPassword(request.password), role });
    audit(store, ctx, { action: 'user.create', outcome: 'success', target: user.id, details: { username: user.username, role: user.role } });
    ctx.status = 201;
    ctx.body = presentUser(user);
  });

  router.get('/users/:id', validate({ params: zGetUserPath }), (ctx) => {
    ctx.body = presentUser(findUser((ctx.state.input.params as { id: string }).id));
  });

  router.patch('/users/:id', validate({ params: zUpdateUserPath }), body, validate({ body: zUpdateUserBody }), async (ctx) => {
    const user = findUser((ctx.state.input.params as { id: string }).id);
    const request = ctx.state.input.body as UpdateUserRequest;
    if (Object.keys(request).length === 0) throw validationError([{ path: 'body', message: 'Give at least one of role, password, disabled' }]);
    checkRoleWithinCaller(ctx, user.role, 'change');
    if (request.role) checkRoleWithinCaller(ctx, request.role, 'change');
    // Hash first: from the last-admin check to the write nothing may wait, so two requests can
    // never both pass the check (Node runs one at a time between awaits; SQLite calls are synchronous).
    const passwordHash = request.password === undefined ? undefined : await hashPassword(request.password);
    const current = findUser(user.id);
    const after = { role: request.role ?? current.role, disabled: request.disabled ?? current.disabled };
    if (removesLastAdmin(store, current, after)) throw conflict('This would leave no enabled admin');
    // A new password or disabling ends every session of the user (their JWTs stop working).
    const endSessions = request.password !== undefined || (request.disabled === true && !current.disabled);
    const updated = store.updateUser(current.id, {
      role: request.role,
      disabled: request.disabled,
      passwordHash,
      sessionVersion: endSessions ? current.sessionVersion + 1 : undefined,
    })!;
    const changed = Object.keys(request).filter((k) => k !== 'password');
    audit(store, ctx, {
      action: 'user.update',
      outcome: 'success',
      target: user.id,
      details: { changed: request.password === undefined ? changed : [...changed, 'password'], role: updated.role, disabled: updated.disabled },
    });
    ctx.body = presentUser(updated);
  });

  router.delete('/users/:id', validate({ params: zDeleteUserPath }), (ctx) => {
    const user = findUser((ctx.state.input.params as { id: string }).id);
    checkRoleWithinCaller(ctx, user.role, 'delete');
    if (removesLastAdmin(store, user, null)) throw conflict('This would leave no enabled admin');
    store.deleteUser(user.id);
    audit(store, ctx, { action: 'user.delete', outcome: 'success', target: user.id, details: { username: user.username } });
    ctx.status = 204;
  });

  return router;
}
