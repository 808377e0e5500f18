import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig } from '../../server/src/config.js';
import { startServer, type RunningServer } from '../../server/src/server.js';

export const ADMIN_PASSWORD = 'admin-password-for-tests-1';
export const JWT_SECRET = 'test-jwt-secret-that-is-at-least-32-bytes-long!';

export interface TestServer extends RunningServer {
  dataDir: string;
  modelsDir: string;
  adminPassword: string;
  jwtSecret: string;
  /** Every log line the server wrote, as text. */
  logs: string[];
  /** Stops the server and starts it again on the same data dir (and port 0: a new port). */
  restart(): Promise<TestServer>;
  /** Stops the server and removes its temp dirs. */
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** `--set section.key=value` overrides, e.g. `{ 'rate_limit.requests_per_minute': 5 }`. */
  settings?: Record<string, string | number | boolean>;
  /** Extra INFERNO_* variables. */
  env?: Record<string, string>;
  dataDir?: string;
  modelsDir?: string;
}

/** A real server on an ephemeral loopback port with a temp data dir, capturing its log lines. */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'inferno-test-'));
  const dataDir = options.dataDir ?? path.join(root, 'data');
  const modelsDir = options.modelsDir ?? path.join(root, 'models');
  const logs: string[] = [];
  const env = {
    INFERNO_HOST: '127.0.0.1',
    INFERNO_PORT: '0',
    INFERNO_DATA_DIR: dataDir,
    INFERNO_MODELS_DIR: modelsDir,
    INFERNO_ADMIN_PASSWORD: ADMIN_PASSWORD,
    INFERNO_JWT_SECRET: JWT_SECRET,
    ...options.env,
  };
  const argv = Object.entries(options.settings ?? {}).flatMap(([key, value]) => ['--set', `${key}=${value}`]);
  const config = loadConfig({ env, argv, cwd: root });
  const destination = new Writable({
    write(chunk, _encoding, done) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const server = await startServer(config, { logDestination: destination, announce: (m) => logs.push(m) });
  const close = server.close.bind(server);
  const handle: TestServer = {
    ...server,
    dataDir,
    modelsDir,
    adminPassword: ADMIN_PASSWORD,
    jwtSecret: JWT_SECRET,
    logs,
    async restart() {
      await close();
      return startTestServer({ ...options, dataDir, modelsDir });
    },
    async close() {
      await close();
      if (!options.dataDir) rmSync(root, { recursive: true, force: true });
    },
  };
  return handle;
}

/** JSON request helper: returns status, headers and parsed body. */
export async function call(
  baseUrl: string,
  method: string,
  route: string,
  options: { token?: string; apiKey?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Headers; body: any }> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.Authorization = `Bearer ${options.token}`;
  if (options.apiKey) headers['X-API-Key'] = options.apiKey;
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['Content-Type'] ??= 'application/json';
  }
  const response = await fetch(baseUrl + route, { method, headers, body });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

export async function login(baseUrl: string, username = 'admin', password = ADMIN_PASSWORD): Promise<string> {
  const response = await call(baseUrl, 'POST', '/api/v1/auth/login', { body: { username, password } });
  if (response.status !== 200) throw new Error(`login failed: ${response.status} ${JSON.stringify(response.body)}`);
  return response.body.token as string;
}
