/**
 * Replays two attacks of the security review against a server and prints what they did:
 *
 * 1. a slow-connection flood: many sockets from one loopback address trickling request bodies
 *    (and some that stall), while another address probes /health;
 * 2. a login lockout attack: wrong passwords for `admin` from one address, then a password spray
 *    over many usernames from another, while the right password is tried from elsewhere.
 *
 * Figures: 5xx answers seen, worst /health latency from 127.0.0.1 during each attack against the
 * same probe before it (the baseline, same run), the server's RSS before and after.
 *
 *   npx tsx bench/attack-connections.ts                      # starts its own server (defaults)
 *   npx tsx bench/attack-connections.ts --sockets 3000 --seconds 20
 *   npx tsx bench/attack-connections.ts --url http://127.0.0.1:8080 --pid <server pid>   # a running one
 *                                       (INFERNO_PASSWORD: the admin's password, for the lockout part)
 *
 * Loopback addresses only (127.0.0.0/8); every loop is bounded and stops by itself.
 */
import http from 'node:http';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { ADMIN_PASSWORD, fmt, machineLine, median, parseFlags, startChildServer, table, tempDir, type BenchServer } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const SOCKETS = Number(flags.get('sockets') ?? 2000);
const SECONDS = Number(flags.get('seconds') ?? 15);
const ATTACKER = '127.0.0.2';
const SPRAYER = '127.0.0.3';
const PROBE = '127.0.0.1';

interface Answer {
  status: number; // 0: no answer (connection error)
  ms: number;
}

/** One HTTP request from a chosen loopback source address. */
function request(base: URL, method: string, route: string, localAddress: string, body?: unknown): Promise<Answer> {
  const started = performance.now();
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve) => {
    const req = http.request(
      { host: base.hostname, port: base.port, method, path: route, localAddress, agent: false, timeout: 30_000, headers: payload ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } : {} },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started }));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, ms: performance.now() - started }));
    req.end(payload);
  });
}

/** Probes /health from 127.0.0.1 every 100 ms until `stop` resolves. */
async function probeHealth(base: URL, stop: Promise<unknown>): Promise<Answer[]> {
  const answers: Answer[] = [];
  let done = false;
  void stop.then(() => (done = true));
  while (!done) {
    answers.push(await request(base, 'GET', '/health', PROBE));
    await new Promise((r) => setTimeout(r, 100));
  }
  return answers;
}

function rssMb(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
}

const p50 = (answers: Answer[]) => median(answers.map((a) => a.ms));
const worst = (answers: Answer[]) => Math.max(0, ...answers.map((a) => a.ms));
const count5xx = (answers: Answer[]) => answers.filter((a) => a.status >= 500).length;
const failed = (answers: Answer[]) => answers.filter((a) => a.status !== 200).length;

/** Attack 1: SOCKETS slow sockets from one address for SECONDS; a tenth of them stall after the headers. */
async function slowFlood(base: URL) {
  const sockets: net.Socket[] = [];
  let refusedAtOnce = 0;
  let ending = false;
  let closedLater = 0;
  const opened = performance.now();
  const head = 'POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{';
  for (let i = 0; i < SOCKETS; i++) {
    const socket = net.connect({ host: base.hostname, port: Number(base.port), localAddress: ATTACKER });
    const started = performance.now();
    socket.on('error', () => undefined);
    socket.resume(); // read (and drop) what the server answers, or its close would go unnoticed
    // Closed by the server within 2 s of opening: refused at the cap (opening 2,000 takes a moment).
    socket.once('close', () => {
      if (ending) return;
      if (performance.now() - started < 2000) refusedAtOnce++;
      else closedLater++;
    });
    socket.once('connect', () => socket.write(head));
    (socket as net.Socket & { stalls?: boolean }).stalls = i % 10 === 0;
    sockets.push(socket);
    if (i % 200 === 199) await new Promise((r) => setTimeout(r, 10)); // let the loop breathe while opening
  }
  const trickle = setInterval(() => {
    for (const socket of sockets) if (!socket.destroyed && !(socket as net.Socket & { stalls?: boolean }).stalls) socket.write(' ');
  }, 1000);
  const attack = new Promise((r) => setTimeout(r, SECONDS * 1000));
  const probes = await probeHealth(base, attack);
  const stillOpen = sockets.filter((s) => !s.destroyed).length;
  clearInterval(trickle);
  ending = true;
  for (const socket of sockets) socket.destroy();
  return { probes, refusedAtOnce, closedLater, stillOpen, seconds: (performance.now() - opened) / 1000 };
}

/** Attack 2: 20 wrong passwords for admin from one address, then a spray of 60 usernames from another. */
async function lockoutAttack(base: URL, password: string) {
  const attackAnswers: Answer[] = [];
  let stop = () => {};
  const probing = probeHealth(base, new Promise<void>((resolve) => (stop = resolve)));
  for (let i = 0; i < 20; i++) attackAnswers.push(await request(base, 'POST', '/api/v1/auth/login', ATTACKER, { username: 'admin', password: `wrong-password-${i}` }));
  const rightFromAttacker = await request(base, 'POST', '/api/v1/auth/login', ATTACKER, { username: 'admin', password });
  const rightElsewhere = await request(base, 'POST', '/api/v1/auth/login', '127.0.0.4', { username: 'admin', password });
  for (let i = 0; i < 60; i++) attackAnswers.push(await request(base, 'POST', '/api/v1/auth/login', SPRAYER, { username: `user-${i}`, password: 'Winter2026!' }));
  const sprayerLocked = await request(base, 'POST', '/api/v1/auth/login', SPRAYER, { username: 'admin', password });
  const rightAfterSpray = await request(base, 'POST', '/api/v1/auth/login', PROBE, { username: 'admin', password });
  stop();
  return { attackAnswers, probes: await probing, rightFromAttacker, rightElsewhere, sprayerLocked, rightAfterSpray };
}

async function main() {
  let server: BenchServer | undefined;
  let models: ReturnType<typeof tempDir> | undefined;
  let url = flags.get('url');
  let pid = flags.has('pid') ? Number(flags.get('pid')) : undefined;
  let password = process.env.INFERNO_PASSWORD ?? '';
  if (!url) {
    models = tempDir('inferno-bench-models-');
    // The documented defaults, except a rate limit out of the way of the login attack.
    server = await startChildServer({ modelsDir: models.dir, settings: { 'logging.level': 'error' } });
    url = server.url;
    pid = server.pid;
    password = ADMIN_PASSWORD;
  }
  const base = new URL(url);
  try {
    console.log(`attack-connections: ${url} (${server?.where ?? `pid ${pid ?? '?'}`}); ${machineLine()}`);
    const rssBefore = rssMb(pid);
    const baseline: Answer[] = [];
    for (let i = 0; i < 30; i++) baseline.push(await request(base, 'GET', '/health', PROBE));

    const flood = await slowFlood(base);
    const rssAfterFlood = rssMb(pid);
    const lockout = password ? await lockoutAttack(base, password) : undefined;
    const rssAfter = rssMb(pid);

    const base_ms = worst(baseline);
    console.log(`\nslow-connection flood: ${SOCKETS} sockets from ${ATTACKER} for ${SECONDS} s (1 in 10 stalls after its headers)`);
    console.log(`  closed by the server at once (over the cap): ${flood.refusedAtOnce}, later (stalled bodies): ${flood.closedLater}, still open at the end: ${flood.stillOpen}`);
    const rows: (string | number)[][] = [
      ['baseline (no attack)', baseline.length, failed(baseline), count5xx(baseline), fmt(p50(baseline)), fmt(base_ms), '1.0x'],
      ['slow-connection flood', flood.probes.length, failed(flood.probes), count5xx(flood.probes), fmt(p50(flood.probes)), fmt(worst(flood.probes)), `${fmt(worst(flood.probes) / base_ms)}x`],
    ];
    if (lockout) {
      rows.push(['login lockout + spray', lockout.probes.length, failed(lockout.probes), count5xx(lockout.probes), fmt(p50(lockout.probes)), fmt(worst(lockout.probes)), `${fmt(worst(lockout.probes) / base_ms)}x`]);
      const statuses = (answers: Answer[]) => {
        const byStatus = new Map<number, number>();
        for (const a of answers) byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1);
        return [...byStatus].map(([status, n]) => `${status}×${n}`).join(' ');
      };
      console.log(`\nlogin attack: 20 wrong admin passwords from ${ATTACKER}, then 60 usernames sprayed from ${SPRAYER}: ${statuses(lockout.attackAnswers)} (5xx: ${count5xx(lockout.attackAnswers)})`);
      console.log(`  right admin password from ${ATTACKER} (the guesser): ${lockout.rightFromAttacker.status} in ${fmt(lockout.rightFromAttacker.ms, 0)} ms`);
      console.log(`  right admin password from 127.0.0.4 (elsewhere):     ${lockout.rightElsewhere.status} in ${fmt(lockout.rightElsewhere.ms, 0)} ms`);
      console.log(`  right admin password from ${SPRAYER} (the sprayer):  ${lockout.sprayerLocked.status} in ${fmt(lockout.sprayerLocked.ms, 0)} ms`);
      console.log(`  right admin password from ${PROBE} after the spray:   ${lockout.rightAfterSpray.status} in ${fmt(lockout.rightAfterSpray.ms, 0)} ms`);
    } else {
      console.log('\n(login attack skipped: set INFERNO_PASSWORD to the admin password of the running server)');
    }
    console.log(`\n/health from ${PROBE}, every 100 ms:`);
    console.log(table(['phase', 'probes', 'not 200', '5xx', 'median ms', 'worst ms', 'worst vs baseline'], rows));
    console.log(`\nserver RSS: ${fmt(rssBefore)} MB before, ${fmt(rssAfterFlood)} MB after the flood, ${fmt(rssAfter)} MB at the end`);
  } finally {
    await server?.stop();
    models?.remove();
  }
}

await main();
