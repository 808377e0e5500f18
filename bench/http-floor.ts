/**
 * The HTTP floor: requests/s of our server against a bare Koa handler on the same Node, both child
 * processes, loaded by autocannon from this process in alternating rounds.
 *
 *   npx tsx bench/http-floor.ts [--seconds 3] [--rounds 5] [--connections 16] [--quick] [--baseline DIR] [--wrk [PATH]]
 *
 * --baseline DIR: also measure the server of another checkout (e.g. `git archive main` unpacked,
 * with this checkout's node_modules linked in), for a before/after ratio in the same run.
 * --wrk [PATH]: load with wrk (one thread; `wrk` from PATH unless given) instead of autocannon,
 * which spends more CPU of its own: on a machine of few cores the client then takes less from
 * the servers it measures.
 *
 * Our server runs as configured by default except the rate limit, which stays on with a budget
 * the load cannot exhaust (each request is counted and gets its X-RateLimit-* headers).
 * (a) authenticated `GET /api/v1/models` with an API key (X-API-Key), and with a JWT;
 * (b) `GET /health` (no authentication, no rate limit);
 * against the bare handler's same paths; and, for reference, bare Koa answering the listing with
 * our server's response headers. Medians over the rounds; ratios in this one run; the
 * server's CPU time per request from /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import autocannon from 'autocannon';
import { writeDemoModel } from '../server/src/engine/demo-model.js';
import { apiKeyOf, cpuSeconds, fmt, machineLine, median, parseFlags, REPO_ROOT, startChildServer, table, tempDir, type BenchServer } from './lib.js';

export interface FloorOptions {
  seconds: number;
  rounds: number;
  connections: number;
  log: (line?: string) => void;
  /** Another checkout (e.g. of main) whose server is measured too, for a before/after ratio. */
  baseline?: string;
  /** A wrk binary: load with it (one thread) instead of autocannon. */
  wrk?: string;
}

async function startBareKoa(modelsBody: string, headers: Record<string, string>): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'bench/bare-koa.ts')], {
    cwd: REPO_ROOT,
    env: { ...process.env, BARE_MODELS_BODY: modelsBody, BARE_HEADERS: JSON.stringify(headers) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += String(d);
      const match = /listening on (\S+)/.exec(out);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`bare Koa exited with ${code}`)));
  });
  return {
    url,
    pid: child.pid!,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    },
  };
}

interface Measured {
  rps: number;
  p50: number;
  p99: number;
  cpuUsPerRequest: number;
}

/** wrk's duration as milliseconds (`812.00us`, `1.20ms`, `2.01s`). */
const wrkMs = (text: string) => Number.parseFloat(text) * (text.endsWith('us') ? 1e-3 : text.endsWith('ms') ? 1 : text.endsWith('s') ? 1e3 : 1);

/** One load of `seconds` with wrk (one thread: it needs far less CPU than autocannon). */
async function loadWrk(url: string, pid: number, headers: Record<string, string>, options: FloorOptions): Promise<Measured> {
  const args = ['-t1', `-c${options.connections}`, `-d${options.seconds}s`, '--latency', ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), url];
  const cpuBefore = cpuSeconds(pid);
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(options.wrk!, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout!.on('data', (d: Buffer) => (text += String(d)));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited with ${code}: ${text}`))));
  });
  const cpu = cpuSeconds(pid) - cpuBefore;
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const bad = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0) + (/Socket errors/.test(out) ? 1 : 0);
  if (!requests || bad > 0) throw new Error(`${url}: wrk reported errors or non-2xx answers:\n${out}`);
  const percentile = (p: string) => wrkMs(new RegExp(`\\s${p}%\\s+(\\S+)`).exec(out)?.[1] ?? 'NaN');
  return { rps: requests / options.seconds, p50: percentile('50'), p99: percentile('99'), cpuUsPerRequest: (cpu * 1e6) / requests };
}

async function load(url: string, pid: number, headers: Record<string, string>, options: FloorOptions): Promise<Measured> {
  if (options.wrk) return loadWrk(url, pid, headers, options);
  const cpuBefore = cpuSeconds(pid);
  const result = await autocannon({ url, connections: options.connections, duration: options.seconds, headers });
  const cpu = cpuSeconds(pid) - cpuBefore;
  const ok = result['2xx'];
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`${url}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
  return { rps: ok / options.seconds, p50: result.latency.p50, p99: result.latency.p99, cpuUsPerRequest: (cpu * 1e6) / ok };
}

/** Runs the HTTP floor comparison and prints its table. */
export async function httpFloor(options: FloorOptions): Promise<{ modelsRatio: number; healthRatio: number }> {
  const { log } = options;
  const models = tempDir('inferno-bench-floor-');
  await writeDemoModel(path.join(models.dir, 'demo-tiny.gguf'), { preset: 'tiny' });
  // Rate limiting stays on (the default), with a budget 16 connections cannot use up in a run.
  const settings = { 'rate_limit.requests_per_minute': 100_000_000, 'logging.level': 'info' };
  const server = await startChildServer({ modelsDir: models.dir, settings });
  const before = options.baseline ? await startChildServer({ modelsDir: models.dir, settings, root: options.baseline }) : undefined;
  try {
    const key = await apiKeyOf(server);
    const beforeKey = before && (await apiKeyOf(before));
    const answer = await fetch(`${server.url}/api/v1/models`, { headers: { 'X-API-Key': key } });
    const body = await answer.text();
    // Those Koa or Node set themselves (length, type, date, keep-alive) stay theirs.
    const own = new Set(['content-length', 'content-type', 'date', 'connection', 'keep-alive']);
    const bare = await startBareKoa(body, Object.fromEntries([...answer.headers].filter(([name]) => !own.has(name))));
    try {
      type Target = { url: string; pid: number; headers: Record<string, string> };
      const cases: { name: string; ours: Target; bare: string; before?: Target }[] = [
        {
          name: 'GET /api/v1/models, API key',
          ours: { url: `${server.url}/api/v1/models`, pid: server.pid!, headers: { 'X-API-Key': key } },
          bare: `${bare.url}/api/v1/models`,
          before: before && { url: `${before.url}/api/v1/models`, pid: before.pid!, headers: { 'X-API-Key': beforeKey! } },
        },
        {
          name: 'GET /api/v1/models, JWT',
          ours: { url: `${server.url}/api/v1/models`, pid: server.pid!, headers: { Authorization: `Bearer ${server.token}` } },
          bare: `${bare.url}/api/v1/models`,
          before: before && { url: `${before.url}/api/v1/models`, pid: before.pid!, headers: { Authorization: `Bearer ${before.token}` } },
        },
        { name: 'GET /health', ours: { url: `${server.url}/health`, pid: server.pid!, headers: {} }, bare: `${bare.url}/health`, before: before && { url: `${before.url}/health`, pid: before.pid!, headers: {} } },
        // A reference, not our server: bare Koa sending the listing with our response headers
        // (security headers, rate-limit headers, request id), what they alone cost.
        { name: 'reference: bare Koa + our response headers', ours: { url: `${bare.url}/with-headers/api/v1/models`, pid: bare.pid, headers: {} }, bare: `${bare.url}/api/v1/models` },
      ];
      const results = cases.map(() => ({ ours: [] as Measured[], bare: [] as Measured[], before: [] as Measured[] }));
      // Warm-up (JIT, caches), then alternating rounds.
      for (const c of cases) {
        await load(c.ours.url, c.ours.pid, c.ours.headers, { ...options, seconds: 1 });
        await load(c.bare, bare.pid, {}, { ...options, seconds: 1 });
        if (c.before) await load(c.before.url, c.before.pid, c.before.headers, { ...options, seconds: 1 });
      }
      for (let r = 0; r < options.rounds; r++) {
        for (const [i, c] of cases.entries()) {
          results[i]!.ours.push(await load(c.ours.url, c.ours.pid, c.ours.headers, options));
          results[i]!.bare.push(await load(c.bare, bare.pid, {}, options));
          if (c.before) results[i]!.before.push(await load(c.before.url, c.before.pid, c.before.headers, options));
        }
      }
      const m = (xs: Measured[], k: keyof Measured) => median(xs.map((x) => x[k]));
      log(`HTTP floor: ${options.wrk ? 'wrk -t1' : 'autocannon'}, ${options.connections} connections, ${options.seconds} s x ${options.rounds} alternating rounds; medians`);
      const beforeColumns = before ? ['baseline req/s', 'baseline/bare', 'baseline CPU µs/req'] : [];
      log(
        table(
          ['request', 'ours req/s', 'bare Koa req/s', 'ours/bare', 'ours p50/p99 ms', 'bare p50/p99 ms', 'ours CPU µs/req', 'bare CPU µs/req', ...beforeColumns],
          cases.map((c, i) => {
            const { ours, bare: b, before: was } = results[i]!;
            const latency = (xs: Measured[]) => `${fmt(m(xs, 'p50'), 2)}/${fmt(m(xs, 'p99'), 2)}`;
            const row = [c.name, fmt(m(ours, 'rps'), 0), fmt(m(b, 'rps'), 0), fmt(m(ours, 'rps') / m(b, 'rps'), 2), latency(ours), latency(b), fmt(m(ours, 'cpuUsPerRequest'), 0), fmt(m(b, 'cpuUsPerRequest'), 0)];
            if (before) row.push(...(c.before ? [fmt(m(was, 'rps'), 0), fmt(m(was, 'rps') / m(b, 'rps'), 2), fmt(m(was, 'cpuUsPerRequest'), 0)] : ['–', '–', '–']));
            return row;
          }),
        ),
      );
      if (before) log(`baseline: the server of ${options.baseline}`);
      log('targets: /api/v1/models >= 0.6x bare Koa, /health >= 0.8x');
      const ratio = (i: number) => m(results[i]!.ours, 'rps') / m(results[i]!.bare, 'rps');
      return { modelsRatio: ratio(0), healthRatio: ratio(2) };
    } finally {
      await bare.stop();
    }
  } finally {
    await before?.stop();
    await server.stop();
    models.remove();
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(REPO_ROOT, 'bench/http-floor.ts')) {
  const flags = parseFlags(process.argv.slice(2));
  const quick = flags.has('quick');
  const log = (line = '') => process.stdout.write(line + '\n');
  log(machineLine());
  await httpFloor({ seconds: Number(flags.get('seconds') ?? (quick ? 2 : 3)), rounds: Number(flags.get('rounds') ?? (quick ? 3 : 5)), connections: Number(flags.get('connections') ?? 16), log, baseline: flags.get('baseline'), wrk: flags.get('wrk') === 'true' ? 'wrk' : flags.get('wrk') });
  log(`done; ${machineLine()}`);
}
