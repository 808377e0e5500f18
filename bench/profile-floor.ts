/**
 * Profiles the server under the HTTP floor's load: starts it with `--cpu-prof`, loads one path
 * with autocannon (or wrk: `--wrk [PATH]`, one thread, which leaves more of a small machine to the
 * server), stops it and prints the hottest functions (self time) from the profile.
 *
 *   npx tsx bench/profile-floor.ts [--path /api/v1/models] [--auth key|jwt|none] [--seconds 5] [--top 40] [--root DIR] [--wrk [PATH]] [--bare]
 *
 * --bare: profiles the floor's baseline instead (bench/bare-koa.ts, no authentication), the same
 * way (its listing is an empty one, a little shorter than our server's), so that the two tables can
 * be set side by side.
 *
 * --stream [TOKENS]: profiles token streaming instead of the floor: greedy native SSE streams of the
 * tiny demo model, TOKENS each (default 256), `--parallel P` at once (default 1), for `--seconds`;
 * the figures are then per streamed token, the main thread's work beside the decode.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import autocannon from 'autocannon';
import { writeDemoModel } from '../server/src/engine/demo-model.js';
import { apiKeyOf, parseFlags, REPO_ROOT, serverStream, tempDir } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const urlPath = flags.get('path') ?? '/api/v1/models';
const auth = flags.get('auth') ?? 'key';
const seconds = Number(flags.get('seconds') ?? 5);
const top = Number(flags.get('top') ?? 40);
const root = flags.get('root') ?? REPO_ROOT;
const wrk = flags.get('wrk') === 'true' ? 'wrk' : flags.get('wrk');
const streamTokens = flags.has('stream') ? Number(flags.get('stream') === 'true' ? 256 : flags.get('stream')) : undefined;
const parallel = Number(flags.get('parallel') ?? 1);
const unit = streamTokens ? 'token' : 'request';

const models = tempDir('inferno-prof-models-');
const data = tempDir('inferno-prof-data-');
const profDir = tempDir('inferno-prof-');
await writeDemoModel(path.join(models.dir, 'demo-tiny.gguf'), { preset: 'tiny' });
const password = 'profile-admin-password-1234';
const bare = flags.has('bare');
const child = spawn(
  process.execPath,
  bare ? ['--cpu-prof', '--cpu-prof-dir', profDir.dir, '--import', 'tsx', path.join(REPO_ROOT, 'bench/bare-koa.ts')] :
  ['--cpu-prof', '--cpu-prof-dir', profDir.dir, '--import', 'tsx', path.join(root, 'server/src/cli.ts'), 'serve', '--port', '0', '--data-dir', data.dir, '--models-dir', models.dir,
    '--set', 'rate_limit.requests_per_minute=100000000', '--set', 'logging.level=info'],
  { cwd: root, env: { ...process.env, INFERNO_ADMIN_PASSWORD: password, INFERNO_JWT_SECRET: 'bench-jwt-secret-that-is-at-least-32-bytes-long' }, stdio: ['ignore', 'pipe', 'inherit'] },
);
const url = await new Promise<string>((resolve) => {
  let out = '';
  const onData = (d: Buffer) => {
    out += String(d);
    const m = /listening on (\S+)/.exec(out);
    if (m) {
      child.stdout!.off('data', onData);
      child.stdout!.resume();
      resolve(m[1]!);
    }
  };
  child.stdout!.on('data', onData);
});
while (!bare && (await fetch(`${url}/health/ready`).then((r) => r.status, () => 0)) !== 200) await new Promise((r) => setTimeout(r, 50));
const login = bare ? undefined : await fetch(`${url}/api/v1/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: 'admin', password }) });
const { token } = login ? ((await login.json()) as { token: string }) : { token: '' };
const server = { url, token, where: '', pid: child.pid, stop: async () => {} };
const headers: Record<string, string> = bare ? {} : auth === 'key' ? { 'X-API-Key': await apiKeyOf(server) } : auth === 'jwt' ? { Authorization: `Bearer ${token}` } : {};
/** One load of `duration` s; the answers that were 2xx and those that were not. */
async function load(duration: number): Promise<{ '2xx': number; non2xx: number }> {
  if (streamTokens) {
    // '2xx' counts streamed tokens here.
    const until = performance.now() + duration * 1000;
    let tokens = 0;
    const settings = { prompt: 'The quick brown fox', maxTokens: streamTokens, temperature: 0, seed: 1 };
    await Promise.all(Array.from({ length: parallel }, async () => {
      while (performance.now() < until) tokens += (await serverStream(server, 'demo-tiny', settings)).tokens;
    }));
    return { '2xx': tokens, non2xx: 0 };
  }
  if (!wrk) return autocannon({ url: url + urlPath, connections: 16, duration, headers });
  // Asynchronously: this process goes on reading the server's output (its log lines) meanwhile.
  const out = await new Promise<string>((resolve, reject) => {
    const run = spawn(wrk, ['-t1', '-c16', `-d${duration}s`, ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), url + urlPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    run.stdout!.on('data', (d: Buffer) => (text += String(d)));
    run.once('error', reject);
    run.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited with ${code}: ${text}`))));
  });
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return { '2xx': Number(/(\d+) requests in/.exec(out)?.[1] ?? 0) - non2xx, non2xx };
}
await load(1);
const loadStart = process.hrtime.bigint() / 1000n;
const result = await load(seconds);
const loadEnd = process.hrtime.bigint() / 1000n;
process.stdout.write(streamTokens ? `${parallel} stream(s) of ${streamTokens} tokens: ${Math.round(result['2xx'] / seconds)} tok/s\n` : `${urlPath} (${auth}): ${Math.round(result['2xx'] / seconds)} req/s, non-2xx ${result.non2xx}\n`);
const exited = new Promise((r) => child.once('exit', r));
child.kill('SIGTERM');
await exited;

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number }; children?: number[] }
const file = fs.readdirSync(profDir.dir).find((f) => f.endsWith('.cpuprofile'))!;
const profile = JSON.parse(fs.readFileSync(path.join(profDir.dir, file), 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number };
const self = new Map<number, number>();
// Only the samples taken during the measured load (V8's clock and hrtime are both CLOCK_MONOTONIC).
let at = profile.startTime;
for (const [i, id] of profile.samples.entries()) {
  const dt = profile.timeDeltas[i] ?? 0;
  at += dt;
  if (at < Number(loadStart) || at > Number(loadEnd)) continue;
  self.set(id, (self.get(id) ?? 0) + dt);
}
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const name = (n: Node) => `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.replace(/^.*node_modules\//, 'nm/').replace(/^file:\/\/.*\/server\/src\//, 'src/')}:${n.callFrame.lineNumber + 1}:${n.callFrame.columnNumber + 1}`;
const selfByName = new Map<string, number>();
let total = 0;
for (const [id, t] of self) {
  const n = byId.get(id)!;
  total += t;
  selfByName.set(name(n), (selfByName.get(name(n)) ?? 0) + t);
}
// Inclusive time per function name (counted once per sample stack).
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const incl = new Map<string, number>();
for (const [id, t] of self) {
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = name(byId.get(cur)!);
    if (!seen.has(k)) { seen.add(k); incl.set(k, (incl.get(k) ?? 0) + t); }
  }
}
const idle = [...selfByName].filter(([k]) => k.startsWith('(idle)')).reduce((a, [, t]) => a + t, 0);
const busy = total - idle;
process.stdout.write(`during the load: busy ${(busy / 1e6).toFixed(2)} s of ${(total / 1e6).toFixed(2)} s; ${(busy / result['2xx']).toFixed(1)} µs of busy main thread per ${unit}\n`);
const pct = (t: number) => ((100 * t) / busy).toFixed(1).padStart(5);
// Self time by who owns the code: what a bare Koa handler pays as well (Node's HTTP, Koa), and what it does not.
const GROUPS: [string, RegExp][] = [
  ['GC', /^\(garbage collector\)/],
  ['native (system calls: socket and log writes, hashing...)', /^[^ ]+ :0:0$/],
  ['Node internals (http, streams, events, timers)', / node:/],
  ['Koa (koa, koa-compose, delegates, on-finished, mime/type helpers)', / nm\/(koa|koa-compose|delegates|on-finished|ee-first|mime-types|mime-db|type-is|content-type|vary|statuses|http-errors|accepts|parseurl|fresh|encodeurl|escape-html|cache-content-type)\//],
  ['@koa/router (+ debug)', / nm\/(@koa\/router|debug|path-to-regexp)\//],
  ['@koa/cors', / nm\/@koa\/cors\//],
  ['pino, sonic-boom (the access log)', / nm\/(pino|sonic-boom|fast-redact|quick-format-unescaped|atomic-sleep|thread-stream|safe-stable-stringify)/],
  ['prom-client (metrics)', / nm\/prom-client\//],
  ['rate-limiter-flexible', / nm\/rate-limiter-flexible\//],
  ['jsonwebtoken, jws, jwa', / nm\/(jsonwebtoken|jws|jwa|safe-buffer|lodash|semver|ms)/],
  ['our server (server/src)', / src\//],
];
const grouped = new Map<string, number>();
for (const [k, t] of selfByName) {
  if (k.startsWith('(idle)')) continue;
  const group = GROUPS.find(([, re]) => re.test(k))?.[0] ?? 'other';
  grouped.set(group, (grouped.get(group) ?? 0) + t);
}
process.stdout.write(`\nself time by owner (µs per ${unit}):\n`);
for (const [g, t] of [...grouped].sort((a, b) => b[1] - a[1])) process.stdout.write(`${pct(t)}%  ${(t / result['2xx']).toFixed(1).padStart(6)} µs  ${g}\n`);
process.stdout.write('\nself time:\n');
for (const [k, t] of [...selfByName].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(t)}%  ${k}\n`);
process.stdout.write('\ninclusive time:\n');
for (const [k, t] of [...incl].filter(([k]) => !k.startsWith('(idle)') && !k.startsWith('(root)')).sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(t)}%  ${k}\n`);
models.remove();
data.remove();
profDir.remove();
