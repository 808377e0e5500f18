// The examples are documentation that runs: each one against a real server, as a user would run it.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './helpers/server.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');

async function runExample(file: string, env: Record<string, string>, args: string[] = []) {
  // The project's Node 24 first on PATH, as npm scripts have it.
  const PATH = `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH}`;
  return run(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'examples', file), ...args], {
    cwd: root,
    env: { ...process.env, PATH, ...env },
    timeout: 60_000,
  });
}

describe('examples', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
    for (let i = 0; i < 100 && (await fetch(`${server.url}/health/ready`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
  });
  afterAll(() => server.close());

  it('quickstart.ts logs in, creates and uses a scoped key, reads the rate limit and handles a typed error', async () => {
    const { stdout } = await runExample('quickstart.ts', { INFERNO_URL: server.url, INFERNO_PASSWORD: server.adminPassword });
    expect(stdout).toContain('logged in as admin (admin, 11 permissions)');
    expect(stdout).toMatch(/created API key inf_[0-9A-Za-z]{8}… with read_models, run_inference/);
    expect(stdout).toContain('models: demo-tiny (llama,');
    expect(stdout).toMatch(/completion \((stop|length), \d+ tokens\)/);
    expect(stdout).toMatch(/rate limit: \d+\/60 left until/);
    expect(stdout).toContain('as expected, PERMISSION_DENIED (403)');
    expect(stdout).toContain('revoked the key');
    // The key it created is gone again.
    expect(await server.store.listAudit({ action: 'api_key.revoke' })).toHaveLength(1);
  });

  it('sdk-stream.ts streams a completion token by token', async () => {
    const { stdout } = await runExample('sdk-stream.ts', { INFERNO_URL: server.url, INFERNO_PASSWORD: server.adminPassword }, ['Once']);
    expect(stdout).toMatch(/^demo-tiny> Once/);
    expect(stdout).toMatch(/\[(stop|length), \d+ tokens\/s\]/);
  });
});
