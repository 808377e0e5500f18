import jsonwebtoken from 'jsonwebtoken';
import { describe, expect, it } from 'vitest';
import { jwtVerifier } from '../src/auth/jwt.js';

const secret = Buffer.from('a-test-secret-that-is-at-least-32-bytes-long!');
const sign = (claims: object, options: jsonwebtoken.SignOptions = {}, key: Buffer = secret) => jsonwebtoken.sign(claims, key, { algorithm: 'HS256', ...options });

describe('jwtVerifier (signature checks remembered per token)', () => {
  it('refuses a remembered token from the second its exp is reached, as jsonwebtoken does', () => {
    let now = 1_000_000_000_000;
    const verify = jwtVerifier(secret, { now: () => now });
    const exp = Math.floor(now / 1000) + 10;
    const token = sign({ sub: 'u1', jti: 'j1', exp, iat: exp - 20 });
    expect(verify(token)).toEqual({ claims: expect.objectContaining({ sub: 'u1', exp }) });
    now = (exp - 1) * 1000 + 999; // still valid: remembered, and answered from memory
    expect(verify(token)).toEqual({ claims: expect.objectContaining({ sub: 'u1' }) });
    now = exp * 1000;
    expect(verify(token)).toEqual({ refused: 'The token has expired' });
    expect(verify(token)).toEqual({ refused: 'The token has expired' });
  });

  it('never lets a remembered token vouch for another: a changed signature, payload or algorithm is refused', () => {
    const verify = jwtVerifier(secret);
    const exp = Math.floor(Date.now() / 1000) + 600;
    const token = sign({ sub: 'u1', jti: 'j1', exp });
    expect('claims' in verify(token)).toBe(true);
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const flipped = signature.slice(0, -2) + (signature.endsWith('AA') ? 'BB' : 'AA');
    expect(verify(`${header}.${payload}.${flipped}`)).toEqual({ refused: 'Invalid token' });
    const otherPayload = Buffer.from(JSON.stringify({ sub: 'admin', jti: 'j1', exp })).toString('base64url');
    expect(verify(`${header}.${otherPayload}.${signature}`)).toEqual({ refused: 'Invalid token' });
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${payload}.`;
    expect(verify(none)).toEqual({ refused: 'Invalid token' });
    expect(verify(sign({ sub: 'u1', jti: 'j1', exp }, {}, Buffer.from('another-secret-that-is-at-least-32-bytes-long')))).toEqual({ refused: 'Invalid token' });
    expect(verify(sign({ sub: 'u1', jti: 'j1', exp }, { algorithm: 'HS512' }))).toEqual({ refused: 'Invalid token' });
  });

  it('refuses a token without exp and remembers nothing it refused; keeps at most maxEntries', () => {
    const verify = jwtVerifier(secret, { maxEntries: 2 });
    expect(verify(sign({ sub: 'u1', jti: 'j1' }))).toEqual({ refused: 'Invalid token: it carries no expiry' });
    const exp = Math.floor(Date.now() / 1000) + 600;
    const tokens = ['a', 'b', 'c'].map((sub) => sign({ sub, jti: sub, exp }));
    for (const token of tokens) expect('claims' in verify(token)).toBe(true);
    // The claims are shared by every request with this token: frozen, nobody can change them.
    const first = verify(tokens[2]!);
    expect('claims' in first && Object.isFrozen(first.claims)).toBe(true);
  });
});
