// close() (the immediate stop, as opposed to SIGTERM's drain) cuts open connections. The handlers
// of the requests it cut still run on: they must finish what they write (audit, usage) before the
// store closes under them, and nothing of theirs may surface as an error.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A login sent and left running: 'answered', or 'cut' when its connection was closed under it. */
const loginInFlight = (url: string) =>
  fetch(`${url}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
  }).then(
    () => 'answered',
    () => 'cut',
  );

describe('close() with requests in flight', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'inferno-close-'));
  const dirs = { dataDir: path.join(root, 'data'), modelsDir: path.join(root, 'models') };
  let server: TestServer | undefined;
  afterAll(async () => {
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('the cut requests finish their audit and usage writes before the store closes, without errors', async () => {
    server = await startTestServer({ ...dirs, settings: { 'engine.context_size': 32768, 'logging.buffered': false } });
    const token = await login(server.url);
    const generation = fetch(`${server.url}/api/v1/inference`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'demo-tiny', prompt: 'Hello world', temperature: 0, max_tokens: 30_000 }),
    }).then(
      () => 'answered',
      () => 'cut',
    );
    while (!server.engine.stats().some((model) => model.busy > 0)) await sleep(5);
    await sleep(50);
    // A login's password check takes tens of milliseconds: it is still running when close() cuts it.
    const loggingIn = loginInFlight(server.url);
    await sleep(15);
    await server.close();
    expect(await generation).toBe('cut');
    await loggingIn;

    const problems = server.logs.filter((line) => line.startsWith('{') && JSON.parse(line).level >= 50);
    expect(problems).toEqual([]);

    server = await startTestServer(dirs);
    const again = await login(server.url);
    // The cut generation's tokens are accounted for its user.
    const usage = await call(server.url, 'GET', '/api/v1/usage', { token: again });
    expect(usage.status).toBe(200);
    const generated = usage.body.data.reduce((n: number, row: { completion_tokens: number }) => n + row.completion_tokens, 0);
    expect(generated).toBeGreaterThan(0);
    // Both logins before close() are in the audit log, the cut one included.
    const audit = await call(server.url, 'GET', '/api/v1/audit-logs?action=auth.login', { token: again });
    expect(audit.status).toBe(200);
    expect(audit.body.data.filter((entry: { outcome: string }) => entry.outcome === 'success').length).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it('a login cut while its password is checked (no model loaded, so close() is quick) still writes its audit entry', async () => {
    await server?.close();
    server = await startTestServer({ ...dirs, settings: { 'logging.buffered': false } });
    const before = await call(server.url, 'GET', '/api/v1/audit-logs?action=auth.login', { token: await login(server.url) });
    const successes = (body: { data: { outcome: string }[] }) => body.data.filter((entry) => entry.outcome === 'success').length;
    const loggingIn = loginInFlight(server.url);
    await sleep(10);
    await server.close();
    expect(await loggingIn).toBe('cut');
    const problems = server.logs.filter((line) => line.startsWith('{') && JSON.parse(line).level >= 50);
    expect(problems).toEqual([]);
    server = await startTestServer(dirs);
    const after = await call(server.url, 'GET', '/api/v1/audit-logs?action=auth.login', { token: await login(server.url) });
    // The one that read `before` and the cut one.
    expect(successes(after.body)).toBe(successes(before.body) + 1 + 1);
  }, 60_000);
});
