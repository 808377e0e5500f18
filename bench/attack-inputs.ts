// Replays the input-side attacks of the security review (issue #7) against a server and prints,
// per attack: the status codes (and how many were 5xx), the time to the answer, the worst /health
// latency seen while the attack ran (polled every 10 ms from a process of its own), and the server's RSS
// afterwards. Without --url it starts its own server (`server/src/cli.ts serve` in a child
// process, fresh data and models dirs) and also replays the attacks that need the server's
// secrets or its models dir: a validly signed JWT without `exp`, and hostile GGUF files dropped
// into the dir (listed, loaded, used for inference).
//
//   npx tsx bench/attack-inputs.ts
//   npx tsx bench/attack-inputs.ts --url http://127.0.0.1:8080 --password <admin password> [--username admin]
//       [--pid <server pid>] [--jwt-secret <the server's secret>] [--models-dir <the server's models dir>]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import jsonwebtoken from 'jsonwebtoken';
import { buildGguf } from '../test/helpers/gguf-builder.js';
import { fmt, machineLine, parseFlags, startChildServer, table, tempDir } from './lib.js';

const flags = parseFlags(process.argv.slice(2));

interface Target {
  url: string;
  token: string;
  pid?: number;
  jwtSecret?: string;
  modelsDir?: string;
  /** Stops the server and starts a new one on the same models dir (self-started servers only). */
  restart?(): Promise<Target>;
  stop(): Promise<void>;
}

async function target(): Promise<Target> {
  const url = flags.get('url');
  if (url) {
    const password = flags.get('password') ?? process.env.INFERNO_PASSWORD;
    if (!password) throw new Error('--password (or INFERNO_PASSWORD) is needed with --url');
    const login = await fetch(`${url}/api/v1/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: flags.get('username') ?? 'admin', password }) });
    if (login.status !== 200) throw new Error(`login failed: ${login.status}`);
    const { token } = (await login.json()) as { token: string };
    const pid = flags.get('pid');
    return { url, token, pid: pid ? Number(pid) : undefined, jwtSecret: flags.get('jwt-secret'), modelsDir: flags.get('models-dir'), stop: async () => undefined };
  }
  const models = tempDir('inferno-attack-models-');
  const start = async (): Promise<Target> => {
    const server = await startChildServer({ modelsDir: models.dir, settings: { 'logging.level': 'error' } });
    return {
      ...server,
      pid: Number(/(\d+)/.exec(server.where)?.[1]),
      jwtSecret: 'bench-jwt-secret-that-is-at-least-32-bytes-long',
      modelsDir: models.dir,
      async restart() {
        await server.stop();
        return start();
      },
      async stop() {
        await server.stop();
        models.remove();
      },
    };
  };
  return start();
}

/** The server's resident memory in MB, from /proc (Linux) when its pid is known. */
function rssMb(pid: number | undefined): string {
  if (!pid) return 'n/a';
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? fmt(Number(match[1]) / 1024, 0) : 'n/a';
  } catch {
    return 'n/a';
  }
}

interface Request {
  method: string;
  route: string;
  body?: string | Buffer;
  type?: string;
  auth?: Record<string, string>;
}

async function send(t: Target, request: Request): Promise<number> {
  const headers: Record<string, string> = { Authorization: `Bearer ${t.token}`, ...request.auth };
  if (request.body !== undefined) headers['Content-Type'] = request.type ?? 'application/json';
  const body = typeof request.body === 'string' || request.body === undefined ? request.body : new Uint8Array(request.body);
  try {
    const res = await fetch(t.url + request.route, { method: request.method, headers, body });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0; // connection reset
  }
}

// Polls /health every 10 ms from its own process (so that sending a big body here does not delay
// the probe) until its stdin closes, then prints the slowest answer in ms.
const PROBE = `
  let worst = 0, done = false;
  process.stdin.on('end', () => (done = true)).resume();
  (async () => {
    await fetch(process.argv[1] + '/health').then((r) => r.arrayBuffer()); // warm (connection, undici)
    process.stdout.write('ready ');
    while (!done) {
      const started = performance.now();
      await fetch(process.argv[1] + '/health').then((r) => r.arrayBuffer(), () => undefined);
      worst = Math.max(worst, performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    process.stdout.write(String(worst));
  })();`;

async function healthProbe(url: string): Promise<{ stop(): Promise<number> }> {
  const child = spawn(process.execPath, ['-e', PROBE, url], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const ready = new Promise<void>((resolve) =>
    child.stdout.on('data', (d: Buffer) => {
      out += String(d);
      if (out.startsWith('ready ')) resolve();
    }),
  );
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await ready;
  return {
    async stop() {
      child.stdin.end();
      await exited;
      return Number(out.slice('ready '.length));
    },
  };
}

/** Runs the requests one after another while /health is polled; the figures of one attack. */
async function attack(t: Target, name: string, requests: Request[]): Promise<(string | number)[]> {
  const probe = await healthProbe(t.url);
  const started = performance.now();
  const statuses: number[] = [];
  for (const request of requests) statuses.push(await send(t, request));
  const elapsed = performance.now() - started;
  const worst = await probe.stop();
  const counts = [...new Set(statuses)].sort().map((s) => `${s}×${statuses.filter((x) => x === s).length}`).join(' ');
  return [name, counts, statuses.filter((s) => s >= 500 || s === 0).length, fmt(elapsed, 0), fmt(worst, 0), rssMb(t.pid)];
}

const json = (value: unknown) => JSON.stringify(value);
const list = (n: number, item: string) => `[${Array(n).fill(item).join(',')}]`;

/** The hostile GGUF kinds of the review, plus the 60 MB header of 15 arrays of 4M items. */
function hostileModels(): Record<string, () => Buffer> {
  const one = (tensor: Partial<{ dims: (number | bigint)[]; type: number; offset: number | bigint }>) => () =>
    buildGguf({ tensors: [{ name: 't', dims: [32, 4], type: 0, offset: 0, ...tensor }] });
  return {
    'offset-2^50': one({ offset: 2n ** 50n }),
    'dims-0': one({ dims: [32, 0] }),
    'dims-2^40': one({ dims: [32, 2n ** 40n] }),
    'unknown-type': one({ type: 99 }),
    truncated: () => buildGguf({ dataBytes: 100 }),
    'random-1KB': () => randomBytes(1024),
    'arrays-60MB': () => buildGguf({ arrays: Array.from({ length: 15 }, (_, i) => ({ key: `junk.${i}`, length: 4 * 1024 * 1024 })) }),
  };
}

async function main() {
  let t = await target();
  try {
    const keyRes = await fetch(`${t.url}/api/v1/auth/api-keys`, { method: 'POST', headers: { Authorization: `Bearer ${t.token}`, 'Content-Type': 'application/json' }, body: json({ name: 'attack', permissions: ['read_models', 'run_inference'] }) });
    const { key } = (await keyRes.json()) as { key: string };
    const asKey = { Authorization: `Bearer ${key}` };
    const unknownKeys = (n: number) => `{"model":"demo-tiny","prompt":"x",${Array.from({ length: n }, (_, i) => `"k${i}":1`).join(',')}}`;
    const longText = 'lorem ipsum dolor sit amet '.repeat(370); // ~10,000 characters, beyond the context in tokens
    const rows: (string | number)[][] = [];
    rows.push(await attack(t, 'baseline: GET /health x20', Array.from({ length: 20 }, () => ({ method: 'GET', route: '/health' }))));
    rows.push(await attack(t, 'api-keys: permissions of 1,000,000 items', [{ method: 'POST', route: '/api/v1/auth/api-keys', body: `{"name":"x","permissions":${list(1_000_000, '"read_models"').slice(0, 9_000_000).replace(/,[^,]*$/, ']')}}` }]));
    rows.push(await attack(t, 'api-keys: permissions of 2,500,000 items', [{ method: 'POST', route: '/api/v1/auth/api-keys', body: `{"name":"x","permissions":${list(2_500_000, '1')}}` }]));
    rows.push(await attack(t, 'api-keys: duplicate permissions', [{ method: 'POST', route: '/api/v1/auth/api-keys', body: json({ name: 'x', permissions: ['read_models', 'read_models'] }) }]));
    rows.push(await attack(t, 'inference: 100,000 unknown keys', [{ method: 'POST', route: '/api/v1/inference', body: unknownKeys(100_000), auth: asKey }]));
    rows.push(await attack(t, 'inference: 200,000 unknown keys', [{ method: 'POST', route: '/api/v1/inference', body: unknownKeys(200_000), auth: asKey }]));
    rows.push(await attack(t, 'inference: 5,000,000 levels of nesting', [{ method: 'POST', route: '/api/v1/inference', body: '['.repeat(5_000_000), auth: asKey }]));
    rows.push(await attack(t, 'inference: constructor/toString/__proto__', ['constructor', 'toString', '__proto__'].map((name) => ({ method: 'POST', route: '/api/v1/inference', body: `{"model":"demo-tiny","prompt":"x","${name}":{}}`, auth: asKey }))));
    rows.push(await attack(t, '/v1/chat: 2,500,000 content parts', [{ method: 'POST', route: '/v1/chat/completions', body: `{"model":"demo-tiny","messages":[{"role":"user","content":${list(2_500_000, '{}')}}]}`, auth: asKey }]));
    rows.push(await attack(t, 'embeddings: input beyond the context', [
      { method: 'POST', route: '/api/v1/embeddings', body: json({ model: 'demo-tiny', input: longText }), auth: asKey },
      { method: 'POST', route: '/v1/embeddings', body: json({ model: 'demo-tiny', input: longText }), auth: asKey },
    ]));
    if (t.jwtSecret) {
      const me = JSON.parse(Buffer.from(t.token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
      const { exp: _exp, ...claims } = me;
      const forever = jsonwebtoken.sign({ ...claims, jti: `attack-${Date.now()}` }, t.jwtSecret, { algorithm: 'HS256' });
      rows.push(await attack(t, 'auth/me: signed JWT without exp', [{ method: 'GET', route: '/api/v1/auth/me', auth: { Authorization: `Bearer ${forever}` } }]));
    }
    const models = hostileModels();
    for (const [kind, bytes] of Object.entries(models)) {
      rows.push(await attack(t, `upload GGUF: ${kind}`, [{ method: 'POST', route: `/api/v1/models?id=up-${kind.replace(/[^A-Za-z0-9-]/g, '')}`, body: bytes(), type: 'application/octet-stream' }]));
    }
    if (t.modelsDir) {
      const ids = Object.keys(models).map((kind) => `drop-${kind.replace(/[^A-Za-z0-9-]/g, '')}`);
      Object.entries(models).forEach(([, bytes], i) => writeFileSync(path.join(t.modelsDir!, `${ids[i]}.gguf`), bytes()));
      rows.push(await attack(t, 'GET /models, hostile files in the dir', [{ method: 'GET', route: '/api/v1/models' }]));
      rows.push(await attack(t, 'load each hostile file in the dir', ids.map((id) => ({ method: 'POST', route: `/api/v1/models/${id}/load` }))));
      rows.push(await attack(t, 'inference on each hostile file', ids.map((id) => ({ method: 'POST', route: '/api/v1/inference', body: json({ model: id, prompt: 'hi' }), auth: asKey }))));
    }
    if (t.restart) {
      // A restart with the hostile files still in the dir: start-up (which validates them) and the first listing.
      const started = performance.now();
      t = await t.restart();
      rows.push([`restart to ready (${fmt(performance.now() - started, 0)} ms), then:`, '', '', '', '', rssMb(t.pid)]);
      rows.push(await attack(t, 'first GET /models after the restart', [{ method: 'GET', route: '/api/v1/models' }]));
    }
    console.log(`attack-inputs against ${t.url} (${machineLine()})\n`);
    console.log(table(['attack', 'statuses', '5xx', 'answer ms', 'worst /health ms', 'RSS after MB'], rows));
  } finally {
    await t.stop();
  }
}

await main();
