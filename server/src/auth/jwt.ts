import { createSecretKey, randomBytes, randomUUID } from 'node:crypto';
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

/** What a JWT's signature check concluded: its claims, or why it was refused (a message of ours). */
type Verified = { claims: JwtClaims } | { refused: string };
type JwtClaims = { sub?: unknown; jti?: unknown; sv?: unknown; exp?: unknown };

/**
 * Checks a JWT's signature and claims with jsonwebtoken (HS256 only), remembering each token that
 * passed until its `exp`: a token is verified once, not on every request (the check was most of a
 * JWT request's CPU). The key is the whole token, signature included, so only the very same bytes
 * hit; tokens that fail are never remembered (garbage cannot fill memory), and an expired one is
 * verified again (and so refused) the first second it is due. Revocation, logout, a disabled user
 * and a bumped session version are not the signature's business: `authenticate` checks them on
 * every request, past this cache.
 */
export function jwtVerifier(secret: Buffer, options: { maxEntries?: number; now?: () => number } = {}): (token: string) => Verified {
  // A KeyObject of type `secret`: given the raw bytes, jsonwebtoken first tries to parse them as a
  // public key on every verification before treating them as HMAC.
  const key = createSecretKey(secret);
  const max = options.maxEntries ?? 10_000;
  const now = options.now ?? Date.now;
  const verified = new Map<string, { claims: JwtClaims; exp: number }>();
  return (token) => {
    const hit = verified.get(token);
    // jsonwebtoken's own rule: expired once the clock, in whole seconds, reaches `exp`.
    if (hit && Math.floor(now() / 1000) < hit.exp) return { claims: hit.claims };
    if (hit) verified.delete(token);
    let claims: JwtClaims;
    try {
      claims = jsonwebtoken.verify(token, key, { algorithms: [JWT_ALGORITHM], clockTimestamp: Math.floor(now() / 1000) }) as JwtClaims;
    } catch (error) {
      return { refused: (error as Error).name === 'TokenExpiredError' ? 'The token has expired' : 'Invalid token' };
    }
    if (typeof claims !== 'object' || claims === null) return { refused: 'Invalid token' };
    // jsonwebtoken accepts a token without `exp` as valid forever; ours always carry one.
    if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) return { refused: 'Invalid token: it carries no expiry' };
    Object.freeze(claims);
    verified.set(token, { claims, exp: claims.exp });
    if (verified.size > max) verified.delete(verified.keys().next().value!);
    return { claims };
  };
}
