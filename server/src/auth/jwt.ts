import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import jsonwebtoken from 'jsonwebtoken';
import type { Role } from '../gen/types.gen.js';

export const JWT_ALGORITHM = 'HS256';

export interface TokenClaims {
  sub: string;
  role: Role;
  jti: string;
  iat: number;
  exp: number;
  /** The user's session version when issued; a bump revokes every older token. */
  sv: number;
}

/**
 * The signing secret: `[auth] jwt_secret` when set, else a random one generated once into the data
 * dir (mode 0600) so that tokens survive restarts.
 */
export function loadJwtSecret(configured: string | undefined, dataDir: string): Buffer {
  if (configured) return Buffer.from(configured, 'utf8');
  const file = path.join(dataDir, 'jwt-secret');
  let stored: string | undefined;
  try {
    stored = readFileSync(file, 'utf8').trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (stored !== undefined) {
    chmodSync(file, 0o600); // a secret written by an older version, or copied in, is made owner-only
    const secret = Buffer.from(stored, 'base64url');
    if (secret.length < 32) throw new Error(`${file} holds a JWT secret of ${secret.length} bytes; at least 32 are needed (delete the file to generate a new one)`);
    return secret;
  }
  const secret = randomBytes(48);
  writeFileSync(file, secret.toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
  return secret;
}

export function issueToken(
  user: { id: string; role: Role; sessionVersion: number },
  secret: Buffer,
  ttlSeconds: number,
): { token: string; claims: TokenClaims } {
  const iat = Math.floor(Date.now() / 1000);
  const claims: TokenClaims = { sub: user.id, role: user.role, jti: randomUUID(), iat, exp: iat + ttlSeconds, sv: user.sessionVersion };
  return { token: jsonwebtoken.sign(claims, secret, { algorithm: JWT_ALGORITHM }), claims };
}
