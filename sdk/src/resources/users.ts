import type { RequestOptions } from '../core/options.js';
import type { APIPromise } from '../core/response.js';
import { createUser, deleteUser, getUser, listUsers, updateUser } from '../gen/sdk.gen.js';
import type { CreateUserRequest, UpdateUserRequest, User, UserList } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** User management (`/api/v1/users`, needs `manage_users`). */
export class UsersResource extends Resource {
  /** `GET /api/v1/users`: all users, oldest first. */
  list(options?: RequestOptions): APIPromise<UserList> {
    return this.transport.send('listUsers', (o) => listUsers(o), options);
  }

  /** `POST /api/v1/users`: creates a user (role `user` unless given). */
  create(body: CreateUserRequest, options?: RequestOptions): APIPromise<User> {
    return this.transport.send('createUser', (o) => createUser({ ...o, body }), options);
  }

  /** `GET /api/v1/users/{id}`. */
  get(id: string, options?: RequestOptions): APIPromise<User> {
    return this.transport.send('getUser', (o) => getUser({ ...o, path: { id } }), options);
  }

  /**
   * `PATCH /api/v1/users/{id}`: changes role, password or the disabled flag. A new password or
   * disabling ends the user's sessions; disabling also stops the user's API keys.
   */
  update(id: string, body: UpdateUserRequest, options?: RequestOptions): APIPromise<User> {
    return this.transport.send('updateUser', (o) => updateUser({ ...o, path: { id }, body }), options);
  }

  /** `DELETE /api/v1/users/{id}`: deletes the user and their API keys. */
  delete(id: string, options?: RequestOptions): APIPromise<void> {
    return this.transport.send('deleteUser', (o) => deleteUser({ ...o, path: { id } }), options);
  }
}
