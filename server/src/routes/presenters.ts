import type { ApiKey, User } from '../gen/types.gen.js';
import { ROLE_PERMISSIONS } from '../auth/permissions.js';
import type { ApiKeyRecord, UserRecord } from '../store/types.js';

/** Store records as the spec shows them: never a hash, never a secret. */
export function presentUser(user: UserRecord): User {
  return {
    id: user.id,
    username: user.username,
    role: user.role,
    permissions: [...ROLE_PERMISSIONS[user.role]],
    disabled: user.disabled,
    created_at: user.createdAt,
    updated_at: user.updatedAt,
  };
}

export function presentApiKey(key: ApiKeyRecord): ApiKey {
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    user_id: key.userId,
    permissions: key.permissions,
    rate_limit_per_minute: key.rateLimitPerMinute,
    created_at: key.createdAt,
    expires_at: key.expiresAt,
    last_used_at: key.lastUsedAt,
  };
}
