import type { Permission, Role } from '../gen/types.gen.js';

export type { Permission, Role };

export interface UserRecord {
  id: string;
  username: string;
  passwordHash: string;
  role: Role;
  disabled: boolean;
  /** Carried in each JWT (`sv`); bumped on password change and disable, which ends every session. */
  sessionVersion: number;
  createdAt: string;
  updatedAt: string;
}

export interface ApiKeyRecord {
  id: string;
  userId: string;
  name: string;
  prefix: string;
  keyHash: string;
  permissions: Permission[];
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface AuditEvent {
  action: string;
  outcome: 'success' | 'failure' | 'denied';
  actorUserId?: string | null;
  actorKeyId?: string | null;
  /** What the action was about: a username, key id, route... never a secret. */
  target?: string | null;
  ip?: string | null;
  requestId?: string | null;
  details?: Record<string, unknown> | null;
}

export interface AuditRecord extends Required<AuditEvent> {
  id: number;
  time: string;
}

export interface UserStore {
  countUsers(): number;
  createUser(user: { username: string; passwordHash: string; role: Role }): UserRecord;
  getUser(id: string): UserRecord | undefined;
  getUserByUsername(username: string): UserRecord | undefined;
  listUsers(): UserRecord[];
  updateUser(id: string, changes: Partial<Pick<UserRecord, 'passwordHash' | 'role' | 'disabled' | 'sessionVersion'>>): UserRecord | undefined;
  deleteUser(id: string): boolean;
}

export interface ApiKeyStore {
  createApiKey(key: Omit<ApiKeyRecord, 'id' | 'createdAt' | 'lastUsedAt' | 'revokedAt'>): ApiKeyRecord;
  getApiKey(id: string): ApiKeyRecord | undefined;
  findApiKeyByHash(keyHash: string): ApiKeyRecord | undefined;
  listApiKeys(userId: string): ApiKeyRecord[];
  revokeApiKey(id: string): boolean;
  touchApiKey(id: string, at: string): void;
}

/** Revoked JWT ids, kept until the token would have expired anyway. */
export interface RevocationStore {
  revokeToken(jti: string, expiresAtMs: number): void;
  isTokenRevoked(jti: string): boolean;
}

export interface AuditFilter {
  actor?: string;
  action?: string;
  /** ISO time, inclusive. */
  since?: string;
  /** ISO time, exclusive. */
  until?: string;
  /** Only entries older than this id (cursor pagination, newest first). */
  beforeId?: number;
  limit?: number;
}

export interface AuditStore {
  recordAudit(event: AuditEvent): void;
  listAudit(filter?: AuditFilter): AuditRecord[];
}

/** Runtime settings changed through the API, persisted as `section.key` → JSON value. */
export interface SettingsStore {
  getSettings(): Record<string, unknown>;
  putSettings(settings: Record<string, unknown>): void;
}

/** Everything the server persists. SQLite is the embedded default; other backends fit behind this. */
export interface Store extends UserStore, ApiKeyStore, RevocationStore, AuditStore, SettingsStore {
  close(): void;
}
