import { readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import jsonwebtoken from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, createUser } from '../../test/helpers/security.js';
import { call, JWT_SECRET, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

const PASSWORD = 'a-long-user-password-1';

/** restart() keeps the data dir, so the temp root outlives close(): remove it ourselves. */
async function closeAndClean(server: TestServer | undefined) {
  if (!server) return;
  await server.close();
  rmSync(path.dirname(server.dataDir), { recursive: true, force: true });
}

describe('persistence across restarts (INFERNO_JWT_SECRET set)', () => {
  let server: TestServer;
  let adminToken: string;
  let userToken: string;
  let revokedToken: string;
  let key: Awaited<ReturnType<typeof createApiKey>>;
  let revokedKey: Awaited<ReturnType<typeof createApiKey>>;
  let userId: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000 } });
    adminToken = await login(server.url);
    userId = (await createUser(server.url, { token: adminToken }, { username: 'persisted', password: PASSWORD, role: 'user' })).id;
    userToken = await login(server.url, 'persisted', PASSWORD);
    key = await createApiKey(server.url, { token: userToken }, { name: 'survivor', permissions: ['read_models'] });
    revokedKey = await createApiKey(server.url, { token: userToken }, { name: 'gone', permissions: ['read_models'] });
    expect((await call(server.url, 'DELETE', `/api/v1/auth/api-keys/${revokedKey.id}`, { token: userToken })).status).toBe(204);
    revokedToken = await login(server.url, 'persisted', PASSWORD);
    expect((await call(server.url, 'POST', '/api/v1/auth/logout', { token: revokedToken })).status).toBe(204);
    server = await server.restart();
  });
  afterAll(() => closeAndClean(server));

  it('the user can still log in', async () => {
    const token = await login(server.url, 'persisted', PASSWORD);
    const me = await call(server.url, 'GET', '/api/v1/auth/me', { token });
    expect(me.status).toBe(200);
    expect(me.body.user).toMatchObject({ id: userId, username: 'persisted', role: 'user' });
  });

  it('the API key still works, with its permissions', async () => {
    const me = await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: key.key });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ auth_method: 'api_key', api_key: { id: key.id }, permissions: ['read_models'] });
    expect((await call(server.url, 'GET', '/api/v1/users', { apiKey: key.key })).status).toBe(403);
  });

  it('JWTs issued before the restart still work', async () => {
    expect((await call(server.url, 'GET', '/api/v1/auth/me', { token: userToken })).status).toBe(200);
    expect((await call(server.url, 'GET', '/api/v1/users', { token: adminToken })).status).toBe(200);
  });

  it('revocations survive the restart: a logged-out token and a revoked key stay refused', async () => {
    expect((await call(server.url, 'GET', '/api/v1/auth/me', { token: revokedToken })).status).toBe(401);
    expect((await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: revokedKey.key })).status).toBe(401);
  });

  it('the bootstrap admin is not created twice', async () => {
    const users = await call(server.url, 'GET', '/api/v1/users', { token: adminToken });
    expect(users.body.data.filter((u: { username: string }) => u.username.toLowerCase() === 'admin')).toHaveLength(1);
  });
});

describe('persistence with a generated JWT secret (INFERNO_JWT_SECRET empty)', () => {
  let server: TestServer;
  let token: string;
  let secretFile: string;
  let secretBefore: string;
  let firstLogs: string[];

  beforeAll(async () => {
    server = await startTestServer({ env: { INFERNO_JWT_SECRET: '' } });
    firstLogs = server.logs;
    secretFile = path.join(server.dataDir, 'jwt-secret');
    secretBefore = readFileSync(secretFile, 'utf8');
    token = await login(server.url);
  });
  afterAll(() => closeAndClean(server));

  it('generates the secret into the data dir with mode 0600', () => {
    const mode = statSync(secretFile).mode & 0o777;
    expect(mode.toString(8)).toBe('600');
    const text = secretBefore.trim();
    expect(text.length).toBeGreaterThan(0);
    // At least 32 bytes of secret, however it is encoded.
    expect(Buffer.from(text, 'base64url').length >= 32 || Buffer.byteLength(text) >= 43).toBe(true);
  });

  it('does not sign with the helpers\' default secret or any other fixed one', async () => {
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    const forged = jsonwebtoken.sign({ ...claims, jti: `${claims.jti}-x` }, JWT_SECRET, { algorithm: 'HS256' });
    expect((await call(server.url, 'GET', '/api/v1/auth/me', { token: forged })).status).toBe(401);
  });

  it('tokens survive a restart, and the secret is reused (not regenerated)', async () => {
    expect((await call(server.url, 'GET', '/api/v1/auth/me', { token })).status).toBe(200);
    server = await server.restart();
    expect(readFileSync(secretFile, 'utf8')).toBe(secretBefore);
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
    const me = await call(server.url, 'GET', '/api/v1/auth/me', { token });
    expect(me.status).toBe(200);
    expect(me.body.user.username).toBe('admin');
  });

  it('the secret never appears in the logs', () => {
    const secret = secretBefore.trim();
    expect(firstLogs.length).toBeGreaterThan(0);
    for (const line of [...firstLogs, ...server.logs]) expect(line).not.toContain(secret);
  });
});
