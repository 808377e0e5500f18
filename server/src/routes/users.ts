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
import { LastAdminError, UsernameTakenError, type Role, type UserRecord } from '../store/types.js';
import type { RouteDeps } from './deps.js';
import { presentUser } from './presenters.js';

/** Whether the change could leave no enabled admin; the store then checks it in the write's transaction. */
function mayRemoveAdmin(user: UserRecord, after: { role: string; disabled: boolean } | null): boolean {
  if (user.role !== 'admin' || user.disabled) return false;
  return !after || after.role !== 'admin' || after.disabled;
}

/** The store's last-admin refusal as the API's 409. */
function lastAdminConflict(error: unknown): never {
  if (error instanceof LastAdminError) throw conflict('This would leave no enabled admin');
  throw error;
}

export function userRoutes(deps: RouteDeps): Router<AppState> {
  const { store } = deps;
  const body = jsonBody(() => deps.config.limits.max_body_bytes);
  const router = createRouter();
  router.use('/users', requireAuth, requirePermission(store, 'manage_users'));

  const findUser = async (id: string) => {
    const user = await store.getUser(id);
    if (!user) throw notFound('No user with this id');
    return user;
  };

  /**
   * `manage_users` is no way to more power: a caller may only create, change or delete users
   * whose role (before and after) holds no permission the caller lacks.
   */
  const checkRoleWithinCaller = async (ctx: AppContext, role: Role, action: string) => {
    const principal = ctx.state.principal!;
    const missing = ROLE_PERMISSIONS[role].filter((p) => !principal.permissions.includes(p));
    if (missing.length === 0) return;
    await audit(store, ctx, { action: 'permission.denied', outcome: 'denied', target: `${action} ${role}`, details: { missing } });
    throw permissionDenied(`Only a caller with every permission of the ${role} role may ${action} such a user; missing: ${missing.join(', ')}`);
  };

  /** The store's unique index is the last word on usernames, also for two requests racing. */
  const createOrConflict = async (user: { username: string; passwordHash: string; role: Role }) => {
    try {
      return await store.createUser(user);
    } catch (error) {
      if (error instanceof UsernameTakenError) throw conflict('A user with this username already exists');
      throw error;
    }
  };

  router.get('/users', async (ctx) => {
    ctx.body = { data: (await store.listUsers()).map(presentUser) };
  });

  router.post('/users', body, validate({ body: zCreateUserBody }), async (ctx) => {
    const request = ctx.state.input.body as CreateUserRequest;
    const role = request.role ?? 'user';
    await checkRoleWithinCaller(ctx, role, 'create');
    if (await store.getUserByUsername(request.username)) throw conflict('A user with this username already exists');
    const user = await createOrConflict({ username: request.username, passwordHash: await hashPassword(request.password), role });
    await audit(store, ctx, { action: 'user.create', outcome: 'success', target: user.id, details: { username: user.username, role: user.role } });
    ctx.status = 201;
    ctx.body = presentUser(user);
  });

  router.get('/users/:id', validate({ params: zGetUserPath }), async (ctx) => {
    ctx.body = presentUser(await findUser((ctx.state.input.params as { id: string }).id));
  });

  router.patch('/users/:id', validate({ params: zUpdateUserPath }), body, validate({ body: zUpdateUserBody }), async (ctx) => {
    const user = await findUser((ctx.state.input.params as { id: string }).id);
    const request = ctx.state.input.body as UpdateUserRequest;
    if (Object.keys(request).length === 0) throw validationError([{ path: 'body', message: 'Give at least one of role, password, disabled' }]);
    await checkRoleWithinCaller(ctx, user.role, 'change');
    if (request.role) await checkRoleWithinCaller(ctx, request.role, 'change');
    const passwordHash = request.password === undefined ? undefined : await hashPassword(request.password);
    const current = await findUser(user.id);
    const after = { role: request.role ?? current.role, disabled: request.disabled ?? current.disabled };
    // A new password or disabling ends every session of the user (their JWTs stop working).
    const endSessions = request.password !== undefined || (request.disabled === true && !current.disabled);
    // The last-admin check runs in the write's transaction: two racing demotions cannot both pass.
    const updated = await store
      .updateUser(
        current.id,
        { role: request.role, disabled: request.disabled, passwordHash, sessionVersion: endSessions ? current.sessionVersion + 1 : undefined },
        { keepEnabledAdmin: mayRemoveAdmin(current, after) },
      )
      .catch(lastAdminConflict);
    if (!updated) throw notFound('No user with this id');
    const changed = Object.keys(request).filter((k) => k !== 'password');
    await audit(store, ctx, {
      action: 'user.update',
      outcome: 'success',
      target: user.id,
      details: { changed: request.password === undefined ? changed : [...changed, 'password'], role: updated.role, disabled: updated.disabled },
    });
    ctx.body = presentUser(updated);
  });

  router.delete('/users/:id', validate({ params: zDeleteUserPath }), async (ctx) => {
    const user = await findUser((ctx.state.input.params as { id: string }).id);
    await checkRoleWithinCaller(ctx, user.role, 'delete');
    await store.deleteUser(user.id, { keepEnabledAdmin: mayRemoveAdmin(user, null) }).catch(lastAdminConflict);
    await audit(store, ctx, { action: 'user.delete', outcome: 'success', target: user.id, details: { username: user.username } });
    ctx.status = 204;
  });

  return router;
}
