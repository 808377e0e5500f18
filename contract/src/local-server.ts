/**
 * Our own server for a run without `--base-url`: a free loopback port, a temp data dir (the demo
 * model is written into its models dir), a random admin password, and a rate limit of 1000 a minute:
 * enough for the kit's few hundred requests per principal, and low enough for its 429 probe.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig } from '../../server/src/config.js';
import { startServer } from '../../server/src/server.js';

export interface LocalServer {
  url: string;
  username: string;
  password: string;
  close(): Promise<void>;
}

export async function startLocalServer(): Promise<LocalServer> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'contract-server-'));
  const password = randomBytes(18).toString('base64url');
  const env = {
    INFERNO_HOST: '127.0.0.1',
    INFERNO_PORT: '0',
    INFERNO_DATA_DIR: path.join(root, 'data'),
    INFERNO_MODELS_DIR: path.join(root, 'models'),
    INFERNO_ADMIN_PASSWORD: password,
  };
  const argv = ['--set', 'rate_limit.requests_per_minute=1000', '--set', 'logging.level=warn'];
  const config = loadConfig({ env, argv, cwd: root });
  const quiet = new Writable({ write: (_chunk, _encoding, done) => done() });
  const server = await startServer(config, { logDestination: quiet, announce: () => undefined });
  // The llama.cpp binding loads in the background: wait until the server says it is ready.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ready = await fetch(`${server.url}/health/ready`).then((r) => r.status === 200, () => false);
    if (ready) break;
    if (Date.now() > deadline) throw new Error('our server did not become ready within 60 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: server.url,
    username: 'admin',
    password,
    async close() {
      await server.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
