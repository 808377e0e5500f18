/**
 * Usage accounting is batched: events are summed in memory per hour, user, key and model and
 * written in one store call per flush (here on a real SQLite store), and a failed write loses
 * nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/logging/logger.js';
import { UsageRecorder } from '../src/observability/usage.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import type { UsageDelta } from '../src/store/types.js';

const HOUR = 3_600_000;
const T0 = Date.parse('2026-11-30T23:15:00.000Z');

describe('UsageRecorder', () => {
  const dirs: string[] = [];
  const openStore = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-usage-'));
    dirs.push(dir);
    return new SqliteStore(dir);
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('1,000 events are one write of a few rows, with exact sums per hour, user, key and model', async () => {
    const store = openStore();
    const writes: UsageDelta[][] = [];
    const counting = { addUsage: async (d: readonly UsageDelta[]) => (writes.push([...d]), store.addUsage(d)), queryUsage: store.queryUsage.bind(store) };
    const recorder = new UsageRecorder(counting, createLogger('silent'), { enabled: () => true, flushIntervalMs: 60_000 });
    for (let i = 0; i < 1000; i++) {
      recorder.record({ userId: `u${i % 2}`, keyId: i % 4 === 0 ? null : 'k1', model: 'm', promptTokens: 3, completionTokens: i % 5 }, T0 + (i % 2) * HOUR);
    }
    expect(writes).toHaveLength(0); // nothing written before a flush
    await recorder.flush();
    expect(writes).toHaveLength(1);
    expect(writes[0]!.length).toBeLessThanOrEqual(4);
    await recorder.flush(); // nothing new: no write
    expect(writes).toHaveLength(1);

    const total = (await store.queryUsage({ groupBy: [] }))[0]!;
    expect(total).toMatchObject({ requests: 1000, promptTokens: 3000, completionTokens: 2000 });
    const byDay = await store.queryUsage({ groupBy: ['day'] });
    expect(byDay.map((r) => [r.day, r.requests])).toEqual([['2026-11-30', 500], ['2026-12-01', 500]]);
    const sessions = await store.queryUsage({ groupBy: ['key'] });
    expect(sessions.find((r) => r.keyId === null)!.requests).toBe(250);
    // `since` counts from its hour's start; `until` is exclusive.
    expect((await store.queryUsage({ since: '2026-11-30T23:59:00.000Z', groupBy: [] }))[0]!.requests).toBe(1000);
    expect((await store.queryUsage({ since: '2026-12-01T00:00:00.000Z', groupBy: [] }))[0]!.requests).toBe(500);
    expect((await store.queryUsage({ until: '2026-12-01T00:00:00.000Z', groupBy: [] }))[0]!.requests).toBe(500);
    await store.close();
  });

  it('adds to what is stored, and keeps a batch whose write failed for the next flush', async () => {
    const store = openStore();
    let fail = true;
    const flaky = { addUsage: async (d: readonly UsageDelta[]) => (fail ? Promise.reject(new Error('disk full')) : store.addUsage(d)), queryUsage: store.queryUsage.bind(store) };
    const recorder = new UsageRecorder(flaky, createLogger('silent'), { enabled: () => true, flushIntervalMs: 60_000 });
    recorder.record({ userId: 'u', keyId: 'k', model: 'm', promptTokens: 10, completionTokens: 1 }, T0);
    await recorder.flush();
    recorder.record({ userId: 'u', keyId: 'k', model: 'm', promptTokens: 5, completionTokens: 2 }, T0);
    fail = false;
    await recorder.flush();
    recorder.record({ userId: 'u', keyId: 'k', model: 'm', promptTokens: 1, completionTokens: 1 }, T0);
    await recorder.close();
    expect((await store.queryUsage({ groupBy: ['user', 'key', 'model'] }))[0]).toEqual({ userId: 'u', keyId: 'k', model: 'm', day: null, requests: 3, promptTokens: 16, completionTokens: 4 });
    await store.close();
  });

  it('records nothing while usage accounting is off', async () => {
    const store = openStore();
    let enabled = false;
    const recorder = new UsageRecorder(store, createLogger('silent'), { enabled: () => enabled, flushIntervalMs: 60_000 });
    recorder.record({ userId: 'u', keyId: null, model: 'm', promptTokens: 1, completionTokens: 1 });
    enabled = true;
    recorder.record({ userId: 'u', keyId: null, model: 'm', promptTokens: 2, completionTokens: 2 });
    await recorder.close();
    expect((await store.queryUsage({ groupBy: [] }))[0]).toMatchObject({ requests: 1, promptTokens: 2 });
    await store.close();
  });
});
