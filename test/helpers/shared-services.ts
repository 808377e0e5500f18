import { randomBytes } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';

/**
 * PostgreSQL and Redis for the shared-mode tests: the local services by default, or
 * INFERNO_TEST_DATABASE_URL / INFERNO_TEST_REDIS_URL. Each suite gets its own schema (dropped
 * after) and its own Redis key prefix, so runs never see each other's state.
 */
export const TEST_DATABASE_URL = process.env.INFERNO_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const TEST_REDIS_URL = process.env.INFERNO_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

function answers(url: string, defaultPort: number): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port || defaultPort) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Whether both services answer. Where they do not, the suites that need them are skipped with a
 * note, except under CI (`CI` set), where they must run: there the missing service is a failure.
 */
export async function sharedServices(): Promise<{ available: boolean; reason: string }> {
  const [database, redis] = await Promise.all([answers(TEST_DATABASE_URL, 5432), answers(TEST_REDIS_URL, 6379)]);
  const missing = [!database && `PostgreSQL (${TEST_DATABASE_URL})`, !redis && `Redis (${TEST_REDIS_URL})`].filter(Boolean);
  return { available: missing.length === 0, reason: missing.length ? `${missing.join(' and ')} not reachable` : '' };
}

export const mustRunSharedSuites = Boolean(process.env.CI) && process.env.CI !== 'false';

/**
 * A fresh, empty schema in the test database; `url` selects it through `search_path`. Dropping it
 * drops the job queue's schema beside it too (`<name>_pgboss`, where a server on `url` puts pg-boss).
 */
export async function freshSchema(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `inferno_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(TEST_DATABASE_URL);
  url.searchParams.set('options', `-c search_path=${name}`);
  return {
    name,
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
        await client.query(`DROP SCHEMA IF EXISTS ${name}_pgboss CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}
