/**
 * The shared mode's costs, measured in one run:
 *
 * 1. Authenticated `GET /api/v1/models` requests per second on one replica, embedded (SQLite +
 *    in-memory counters) against shared (PostgreSQL + Redis): same machine, same load generator,
 *    runs interleaved (embedded, shared, embedded, shared) and the ratio printed.
 * 2. Time from `kill -9` of the replica running a job to another replica resuming it (pg-boss's
 *    supervisor failing the attempt whose heartbeat stopped, then the other replica's next poll),
 *    read from the jobs table, over `--failovers` kills (median).
 *
 *   npx tsx bench/shared-mode.ts                       # defaults: 8 connections, 8 s per run, 3 kills
 *   npx tsx bench/shared-mode.ts --connections 32 --seconds 15 --rounds 3 --failovers 5
 *   npx tsx bench/shared-mode.ts --failovers 0          # throughput only
 *   npx tsx bench/shared-mode.ts --baseline DIR         # also another checkout's server, shared
 *
 * Needs PostgreSQL and Redis: INFERNO_TEST_DATABASE_URL / INFERNO_TEST_REDIS_URL, or the local
 * services (postgres://postgres@127.0.0.1:5432/test, redis://127.0.0.1:6379). Each run uses a
 * fresh schema and Redis key prefix, dropped or left to expire after.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { writeDemoModel } from '../server/src/engine/demo-model.js';
import { freshSchema, TEST_REDIS_URL } from '../test/helpers/shared-services.js';
import { fmt, machineLine, median, parseFlags, startChildServer, table, tempDir, type BenchServer } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const CONNECTIONS = Number(flags.get('connections') ?? 8);
const SECONDS = Number(flags.get('seconds') ?? 8);
const ROUNDS = Number(flags.get('rounds') ?? 2);
const FAILOVERS = Number(flags.get('failovers') ?? 3);
const BASELINE = flags.get('baseline');

async function apiKey(server: BenchServer): Promise<string> {
  const res = await fetch(`${server.url}/api/v1/auth/api-keys`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'bench', permissions: ['read_models'] }),
  });
  if (res.status !== 201) throw new Error(`key creation: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { key: string }).key;
}

/** `CONNECTIONS` loops of GET /api/v1/models with an API key for `SECONDS`: requests per second. */
async function load(server: BenchServer, key: string): Promise<{ rps: number; errors: number }> {
  const until = Date.now() + SECONDS * 1000;
  let done = 0;
  let errors = 0;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (Date.now() < until) {
        const res = await fetch(`${server.url}/api/v1/models`, { headers: { 'X-API-Key': key } });
        await res.arrayBuffer();
        if (res.status === 200) done++;
        else errors++;
      }
    }),
  );
  return { rps: done / SECONDS, errors };
}

async function throughput(modelsDir: string, databaseUrl: string, baselineUrl?: string): Promise<void> {
  const redis = { 'storage.redis_url': TEST_REDIS_URL, 'storage.redis_key_prefix': `bench-${randomBytes(4).toString('hex')}` };
  const shared = { 'storage.database_url': databaseUrl, ...redis };
  const modes: Record<string, { settings: Record<string, string | number>; root?: string }> = {
    'SQLite + memory': { settings: {} },
    // Apart, what PostgreSQL costs and what Redis's shared counters add to it.
    'PostgreSQL + memory': { settings: { 'storage.database_url': databaseUrl } },
    'PostgreSQL + Redis': { settings: shared },
    // A schema of its own: an older server refuses a schema migrated further than it knows.
    ...(BASELINE && baselineUrl && { 'PostgreSQL + Redis, baseline': { settings: { 'storage.database_url': baselineUrl, ...redis }, root: BASELINE } }),
  };
  const results = new Map<string, number[]>(Object.keys(modes).map((m) => [m, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, { settings, root }] of Object.entries(modes)) {
      const server = await startChildServer({ modelsDir, settings, ...(root && { root }) });
      try {
        const key = await apiKey(server);
        await load(server, key); // warm-up is the first round's first second or so; keep it short
        const { rps, errors } = await load(server, key);
        if (errors > 0) throw new Error(`${name}: ${errors} requests failed`);
        results.get(name)!.push(rps);
      } finally {
        await server.stop();
      }
    }
  }
  const embedded = median(results.get('SQLite + memory')!);
  const sharedRps = median(results.get('PostgreSQL + Redis')!);
  console.log(`\nAuthenticated GET /api/v1/models (X-API-Key), ${CONNECTIONS} connections, ${SECONDS} s per run, ${ROUNDS} rounds interleaved`);
  console.log(
    table(
      ['backends', 'req/s per run', 'median req/s', 'vs embedded'],
      [...results].map(([name, values]) => [name, values.map((v) => fmt(v, 0)).join(', '), fmt(median(values), 0), fmt(median(values) / embedded, 2)]),
    ),
  );
  console.log(`ratio shared/embedded: ${fmt(sharedRps / embedded, 2)}`);
}

/** One kill -9 of the replica running a job: ms until another takes it, and until it finishes a further item. */
async function failover(modelsDir: string, databaseUrl: string): Promise<{ resumed: number; nextItem: number }> {
  const settings = { 'storage.database_url': databaseUrl, 'storage.redis_url': TEST_REDIS_URL, 'storage.redis_key_prefix': `bench-${randomBytes(4).toString('hex')}`, 'logging.level': 'warn' };
  const replicas = [await startChildServer({ modelsDir, settings }), await startChildServer({ modelsDir, settings })];
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const item = { model: 'demo-tiny', prompt: 'Hello world', temperature: 0, max_tokens: 400 };
    const res = await fetch(`${replicas[0]!.url}/api/v1/jobs`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${replicas[0]!.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ requests: Array.from({ length: 20 }, () => item) }),
    });
    const { id } = (await res.json()) as { id: string };
    const row = async () => (await db.query<{ worker: string | null; results: string; status: string }>('SELECT worker, results, status FROM jobs WHERE id = $1', [id])).rows[0]!;
    const succeeded = (results: string) => (JSON.parse(results) as { status: string }[]).filter((r) => r.status === 'succeeded').length;
    let holder: { worker: string | null; results: string; status: string };
    for (;;) {
      holder = await row();
      if (holder.worker && succeeded(holder.results) >= 3) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    // The worker name is "<replica id>/<pid>/<random>": the pid tells which child to kill.
    const pid = Number(holder.worker!.split('/').at(-2));
    const victim = replicas.find((r) => r.pid === pid)!;
    process.kill(pid, 'SIGKILL');
    const killedAt = performance.now();
    let resumedAt = 0;
    let nextItemAt = 0;
    const before = succeeded(holder.results);
    for (;;) {
      const now = await row();
      if (!resumedAt && now.worker && now.worker !== holder.worker) resumedAt = performance.now();
      if (resumedAt && succeeded(now.results) > before) {
        nextItemAt = performance.now();
        break;
      }
      if (performance.now() - killedAt > 120_000) throw new Error('no replica resumed the job');
      await new Promise((r) => setTimeout(r, 20));
    }
    replicas.splice(replicas.indexOf(victim), 1);
    return { resumed: resumedAt - killedAt, nextItem: nextItemAt - killedAt };
  } finally {
    await db.end();
    for (const replica of replicas) await replica.stop();
  }
}

console.log(machineLine());
const models = tempDir('inferno-bench-models-');
mkdirSync(models.dir, { recursive: true });
await writeDemoModel(path.join(models.dir, 'demo-tiny.gguf'), { preset: 'tiny' });
const schemas = [await freshSchema()];
try {
  if (BASELINE) schemas.push(await freshSchema());
  await throughput(models.dir, schemas[0]!.url, schemas[1]?.url);
  const kills = [];
  for (let i = 0; i < FAILOVERS; i++) {
    const schema = await freshSchema();
    schemas.push(schema);
    kills.push(await failover(models.dir, schema.url));
  }
  if (FAILOVERS > 0) {
    console.log(`\nkill -9 of the replica running a 20-item job, two replicas, ${FAILOVERS} kills (defaults: heartbeat 10 s, supervise every 2 s, idle poll 1 s)`);
    console.log(
      table(
        ['event', 'ms after kill -9, per kill', 'median'],
        [
          ['another replica takes the job', kills.map((k) => fmt(k.resumed, 0)).join(', '), fmt(median(kills.map((k) => k.resumed)), 0)],
          ['its first further item is done', kills.map((k) => fmt(k.nextItem, 0)).join(', '), fmt(median(kills.map((k) => k.nextItem)), 0)],
        ],
      ),
    );
  }
} finally {
  for (const schema of schemas) await schema.drop();
  models.remove();
}
