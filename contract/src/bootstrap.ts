/**
 * The few operations the kit uses to set itself up, by operationId: logging in, creating and
 * revoking the narrow keys of the 403 checks, and logging out (which needs a session of its own).
 * Every other operation is found and exercised from the spec alone.
 */
export const BOOTSTRAP = { login: 'login', logout: 'logout', createKey: 'createApiKey' } as const;
