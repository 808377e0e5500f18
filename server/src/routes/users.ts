import type { Router } from '@koa/router';
import { createRouter } from '../http/router.js';
import { hashPassword } from '../auth/passwords.js';
import type { CreateUserRequest, UpdateUserRequest } from '../gen/types.gen.js';
import { zCreateUserBody, zDeleteUserPath, zGetUserPath, zUpdateUserBody, zUpdateUserPath } from '../gen/zod.gen.js';
import { audit } from '../http/audit.js';
import { requireAuth, requirePermission } from '../http/authenticate.js';
import type { AppState } from '../http/context.js';
import { conflict, notFound, validationError } from '../http/errors.js';
import { jsonBody } from '../http/json-body.js';
import { validate } from '../http/validate.js';
import type { Store, UserRecord } from '../store/types.js';
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

  router.get('/users', (ctx) => {
    ctx.body = { data: store.listUsers().map(presentUser) };
  });

  router.post('/users', body, validate({ body: zCreateUserBody }), async (ctx) => {
    const request = ctx.state.input.body as CreateUserRequest;
    if (store.getUserByUsername(request.username)) throw conflict('A user with this username already exists');
    const user = store.createUser({ username: request.username, passwordHash: await hashPassword(request.password), role: request.role ?? 'user' });
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
    const after = { role: request.role ?? user.role, disabled: request.disabled ?? user.disabled };
    if (removesLastAdmin(store, user, after)) throw conflict('This would leave no enabled admin');
    // A new password or disabling ends every session of the user (their JWTs stop working).
    const endSessions = request.password !== undefined || (request.disabled === true && !user.disabled);
    const updated = store.updateUser(user.id, {
      role: request.role,
      disabled: request.disabled,
      passwordHash: request.password === undefined ? undefined : await hashPassword(request.password),
      sessionVersion: endSessions ? user.sessionVersion + 1 : undefined,
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
    if (removesLastAdmin(store, user, null)) throw conflict('This would leave no enabled admin');
    store.deleteUser(user.id);
    audit(store, ctx, { action: 'user.delete', outcome: 'success', target: user.id, details: { username: user.username } });
    ctx.status = 204;
  });

  return router;
}
