import type { RequestOptions } from '../core/options.js';
import type { APIPromise } from '../core/response.js';
import { createApiKey, listApiKeys, revokeApiKey } from '../gen/sdk.gen.js';
import type { ApiKeyList, CreateApiKeyRequest, CreatedApiKey, ListApiKeysData } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** API keys (`/api/v1/auth/api-keys`): a user's own, or anyone's with `manage_users`. */
export class ApiKeysResource extends Resource {
  /**
   * `POST /api/v1/auth/api-keys`: creates a key for the calling user. The raw key is in this
   * response only (`key`); store it now. A key never has a permission its creator lacks.
   */
  create(body: CreateApiKeyRequest, options?: RequestOptions): APIPromise<CreatedApiKey> {
    return this.transport.send('createApiKey', (o) => createApiKey({ ...o, body }), options);
  }

  /** `GET /api/v1/auth/api-keys`: the caller's keys, or `user_id`'s (needs `manage_users`); never the raw keys. */
  list(query?: ListApiKeysData['query'], options?: RequestOptions): APIPromise<ApiKeyList> {
    return this.transport.send('listApiKeys', (o) => listApiKeys(query ? { ...o, query } : o), options);
  }

  /** `DELETE /api/v1/auth/api-keys/{id}`: revokes a key, from its next request on. */
  revoke(id: string, options?: RequestOptions): APIPromise<void> {
    return this.transport.send('revokeApiKey', (o) => revokeApiKey({ ...o, path: { id } }), options);
  }
}
