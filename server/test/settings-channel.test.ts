/**
 * A setting PATCHed on one replica reaches the others by Redis pub/sub at once, not at their next
 * poll: here the watching replica polls only once an hour, so only the announcement can bring the
 * change within the test. Real PostgreSQL and Redis, two stores as two replicas would open them.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../src/config.js';
import { createLogger } from '../src/logging/logger.js';
import { watchSettings, type SettingsWatch } from '../src/runtime-settings.js';
import { connectRedis } from '../src/shared/redis.js';
import { SettingsChannel } from '../src/shared/settings-channel.js';
import { PostgresStore } from '../src/store/postgres-store.js';
import { freshSchema, mustRunSharedSuites, sharedServices, TEST_REDIS_URL } from '../../test/helpers/shared-services.js';

const services = await sharedServices();
const run = services.available || mustRunSharedSuites;
if (!run) console.warn(`settings channel: skipped, ${services.reason} (CI runs this suite and fails without them)`);

async function until(what: string, holds: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!holds()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.skipIf(!run)('settings changes announced on Redis', () => {
  const logger = createLogger('silent');
  const prefix = `inferno-test-${randomBytes(4).toString('hex')}`;
  let schema: Awaited<ReturnType<typeof freshSchema>>;
  const stores: PostgresStore[] = [];
  const channels: SettingsChannel[] = [];
  const redises: Awaited<ReturnType<typeof connectRedis>>[] = [];
  let watch: SettingsWatch;
  let watching: Config;

  beforeAll(async () => {
    schema = await freshSchema();
    for (let i = 0; i < 2; i++) {
      stores.push(await PostgresStore.open(schema.url, { poolSize: 2 }));
      redises.push(await connectRedis(TEST_REDIS_URL));
      channels.push(new SettingsChannel(redises[i]!, prefix, logger));
    }
    watching = loadConfig({ env: {} });
    watch = watchSettings(stores[1]!, watching, logger, 3_600_000);
    await channels[1]!.subscribe(() => watch.refresh());
  });

  afterAll(async () => {
    watch?.stop();
    for (const channel of channels) channel.close();
    for (const redis of redises) redis.disconnect();
    for (const store of stores) await store.close();
    await schema?.drop();
  });

  it('applies a change persisted and announced by another replica without waiting for the poll', async () => {
    expect(watching.rate_limit.requests_per_minute).toBe(60);
    await stores[0]!.putSettings({ 'rate_limit.requests_per_minute': 7 });
    channels[0]!.publish();
    await until('the change to arrive', () => watching.rate_limit.requests_per_minute === 7);
    // Changes in quick succession: each announcement re-reads, so the last one wins, none is missed.
    for (const value of [8, 9, 10]) {
      await stores[0]!.putSettings({ 'rate_limit.requests_per_minute': value });
      channels[0]!.publish();
    }
    await until('the last change to arrive', () => watching.rate_limit.requests_per_minute === 10);
  });
});
