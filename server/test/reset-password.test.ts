// The operator's way back in: `users reset-password` on the data dir, while the server runs.
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, tempRoot } from '../../test/helpers/child-server.js';
import { expectApiError } from '../../test/helpers/api-checks.js';
import { ADMIN_PASSWORD, call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

describe('users reset-password (CLI)', () => {
  const dir = tempRoot();
  const dataDir = path.join(dir, 'data');
  const modelsDir = path.join(dir, 'models');
  let server: TestServer;
  const from = (ip: string) => ({ 'X-Forwarded-For': ip });

  beforeAll(async () => {
    mkdirSync(modelsDir, { recursive: true });
    server = await startTestServer({ dataDir, modelsDir, settings: { 'server.trust_proxy': true, 'rate_limit.requests_per_minute': 10_000 } });
  });
  afterAll(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints a generated password once, ends the user\'s sessions and lockouts, while the server runs', async () => {
    const oldToken = await login(server.url);
    for (let i = 0; i < 5; i++) {
      await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: 'wrong-password' }, headers: from('10.0.0.1') });
    }
    const locked = await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD }, headers: from('10.0.0.1') });
    expectApiError(locked, 429, 'RATE_LIMITED');

    const { code, stdout } = await runCli(dir, ['users', 'reset-password', 'admin']);
    expect(code).toBe(0);
    const password = /New password \(shown only this once\): (\S+)/.exec(stdout)?.[1];
    expect(password).toMatch(/^[\w-]{24}$/);

    expectApiError(await call(server.url, 'GET', '/api/v1/auth/me', { token: oldToken }), 401, 'AUTHENTICATION_FAILED');
    expect((await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD } })).status).toBe(401);
    // The address that was locked out gets in with the new password at once.
    const back = await call(server.url, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password }, headers: from('10.0.0.1') });
    expect(back.status).toBe(200);
    expect((await server.store.listAudit({ action: 'user.update', limit: 1 }))[0]!.details).toEqual({ password_reset: 'cli' });
  });

  it('--password-from-env sets INFERNO_ADMIN_PASSWORD and prints no password', async () => {
    const chosen = 'the-operators-new-password';
    const { code, stdout } = await runCli(dir, ['users', 'reset-password', 'admin', '--password-from-env'], { INFERNO_ADMIN_PASSWORD: chosen });
    expect(code).toBe(0);
    expect(stdout).not.toContain(chosen);
    expect(stdout).not.toContain('New password');
    expect(await login(server.url, 'admin', chosen)).toBeTruthy();
    const tooShort = await runCli(dir, ['users', 'reset-password', 'admin', '--password-from-env'], { INFERNO_ADMIN_PASSWORD: 'short' });
    expect(tooShort.code).toBe(2);
    expect(tooShort.stderr).toContain('at least 12 characters');
  });

  it('names an unknown user or a missing database, exit code 2', async () => {
    const unknown = await runCli(dir, ['users', 'reset-password', 'nobody']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('No user "nobody"');
    const empty = await runCli(dir, ['users', 'reset-password', 'admin', '--data-dir', path.join(dir, 'nowhere')]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('No database at');
  });

  it('a restart with INFERNO_ADMIN_PASSWORD on an existing data dir warns that it is ignored and points at the CLI', async () => {
    server = await server.restart();
    const warning = server.logs.find((line) => line.includes('INFERNO_ADMIN_PASSWORD'));
    expect(warning).toBeDefined();
    expect(JSON.parse(warning!).level).toBe('warn');
    expect(warning).toContain('users reset-password admin --password-from-env');
  });
});

describe('file modes in the data dir', () => {
  it('the database, its -wal and -shm files and the generated JWT secret are 0600, the data dir 0700', async () => {
    const dir = tempRoot();
    const dataDir = path.join(dir, 'fresh', 'data');
    const previous = process.umask(0o022);
    let server: TestServer | undefined;
    try {
      server = await startTestServer({ dataDir, modelsDir: path.join(dir, 'models'), env: { INFERNO_JWT_SECRET: '' } });
      await login(server.url); // a write, so the WAL files exist
      const files = readdirSync(dataDir).sort();
      expect(files).toEqual(expect.arrayContaining(['inferno.db', 'inferno.db-shm', 'inferno.db-wal', 'jwt-secret']));
      for (const file of files) expect((statSync(path.join(dataDir, file)).mode & 0o777).toString(8), file).toBe('600');
      expect((statSync(dataDir).mode & 0o777).toString(8)).toBe('700');
    } finally {
      process.umask(previous);
      await server?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
