import { zPermission } from '../gen/zod.gen.js';
import type { Permission, Role } from '../gen/types.gen.js';

/** The eleven permissions, in the spec's order. */
export const ALL_PERMISSIONS: readonly Permission[] = zPermission.options;

export const ROLE_PERMISSIONS: Readonly<Record<Role, readonly Permission[]>> = {
  admin: ALL_PERMISSIONS,
  user: ['read_models', 'run_inference', 'use_streaming', 'read_metrics'],
  guest: ['read_models', 'run_inference'],
};

/** Sorts into the spec's order, so lists compare and read the same everywhere. */
export function canonicalPermissions(permissions: Iterable<Permission>): Permission[] {
  const set = new Set(permissions);
  return ALL_PERMISSIONS.filter((p) => set.has(p));
}
