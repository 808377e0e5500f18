// Loading and unloading under load: the engine must never dispose a model a request still uses,
// never exceed `[models] max_loaded`, and turn an unload under a request into a clean 503.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, type Config } from '../../server/src/config.js';
import { writeDemoModel } from '../../server/src/engine/demo-model.js';
import { InferenceEngine, ModelUnloadedError } from '../../server/src/engine/engine.js';
import { ModelCatalog } from '../../server/src/engine/model-catalog.js';
import { QueueFullError } from '../../server/src/engine/sequence-pool.js';
import { createLogger } from '../../server/src/logging/logger.js';
import { expectApiError, waitForReady } from '../../test/helpers/api-checks.js';
import { waitFor } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

// Greedy decoding of this prompt never samples the end-of-turn token: it runs to max_tokens.
const LONG = { prompt: 'Hello world', temperature: 0, maxTokens: 1500 };

describe('engine lifecycle', () => {
  let engine: InferenceEngine;
  let config: Config;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-engine-'));
    for (const [id, seed] of [['a', 1], ['b', 2], ['c', 3]] as const) await writeDemoModel(path.join(dir, `${id}.gguf`), { preset: 'tiny', seed });
    config = structuredClone(DEFAULT_CONFIG) as Config;
    config.models.max_loaded = 1;
    config.engine.parallel = 2;
    engine = new InferenceEngine(config, new ModelCatalog(dir), createLogger('silent'));
    await engine.start();
  });
  afterAll(async () => {
    await engine.close();
    process.off('unhandledRejection', onUnhandled);
  });

  it('never holds more than max_loaded models, however many loads start together', async () => {
    await Promise.all([engine.load('a'), engine.load('b'), engine.load('c'), engine.load('b')]);
    expect(engine.loadedIds()).toHaveLength(1);
  });

  it('an unload during generation stops it with ModelUnloadedError, then frees the model', async () => {
    await engine.load('a');
    const generation = engine.generate({ model: 'a', ...LONG });
    const settled = generation.then(
      () => 'resolved',
      (error: unknown) => error,
    );
    await new Promise((r) => setTimeout(r, 30)); // mid-way through decoding
    const unloaded = await engine.unload('a');
    expect(unloaded).toBe(true);
    expect(await settled).toBeInstanceOf(ModelUnloadedError);
    expect(engine.isLoaded('a')).toBe(false);
    // The engine still serves: the model loads again on the next request.
    const again = await engine.generate({ model: 'a', prompt: 'Hi', maxTokens: 4, temperature: 0 });
    expect(again.usage.completion_tokens).toBe(4);
    expect(unhandled).toEqual([]);
  });

  it('embedding requests wait in a bounded queue and stop when their client goes away', async () => {
    config.engine.max_queue = 1;
    try {
      const inputs = Array.from({ length: 64 }, (_, i) => `input number ${i} `.repeat(20));
      await engine.embed('c', ['warm up']); // the model and its embedding context are ready
      const running = engine.embed('c', inputs);
      await new Promise((r) => setTimeout(r, 5)); // the first holds the embedding context
      const controller = new AbortController();
      const queued = engine.embed('c', inputs, controller.signal);
      await expect(engine.embed('c', ['one more'])).rejects.toBeInstanceOf(QueueFullError);
      controller.abort(new Error('client gone'));
      await expect(queued).rejects.toThrow('client gone');
      expect((await running).vectors).toHaveLength(64);
    } finally {
      config.engine.max_queue = DEFAULT_CONFIG.engine.max_queue;
    }
  });

  it('an unload while a load is under way waits for it, so the model ends up unloaded', async () => {
    await engine.unload('a');
    const loading = engine.load('b');
    const unloaded = engine.unload('b');
    await loading;
    expect(await unloaded).toBe(true);
    expect(engine.isLoaded('b')).toBe(false);
  });
});

describe('unload under a live request, over HTTP', () => {
  let server: TestServer;
  let token: string;
  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000 } });
    await waitForReady(server.url);
    token = await login(server.url);
  });
  afterAll(() => server.close());

  it('answers the running request 503 SERVICE_UNAVAILABLE with Retry-After, and the server stays up', async () => {
    const running = call(server.url, 'POST', '/api/v1/inference', {
      token,
      body: { model: 'demo-tiny', prompt: 'Hello world', temperature: 0, max_tokens: 1500 },
    });
    // Unload once the generation runs (not while the model is still loading: then the request
    // would rightly load it again and succeed).
    await waitFor(() => (server.engine.stats().find((m) => m.model === 'demo-tiny')?.busy === 1 ? true : undefined), 10_000, 'the generation to start');
    const unload = await call(server.url, 'POST', '/api/v1/models/demo-tiny/unload', { token });
    expect(unload.status).toBe(200);
    expect(unload.body.loaded).toBe(false);
    const res = await running;
    expectApiError(res, 503, 'SERVICE_UNAVAILABLE');
    expect(res.headers.get('retry-after')).toBe('1');
    const after = await call(server.url, 'POST', '/api/v1/inference', { token, body: { model: 'demo-tiny', prompt: 'Hi', max_tokens: 3 } });
    expect(after.status).toBe(200);
  });

  it('a stream cut by an unload ends with an error event carrying the 503 body', async () => {
    const response = await fetch(`${server.url}/api/v1/inference`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'demo-tiny', prompt: 'Hello world', temperature: 0, max_tokens: 1500, stream: true }),
    });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const first = await reader.read(); // the stream is running
    expect(new TextDecoder().decode(first.value)).toContain('event: token');
    await call(server.url, 'POST', '/api/v1/models/demo-tiny/unload', { token });
    let text = '';
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += new TextDecoder().decode(chunk.value);
    expect(text).toContain('event: error');
    expect(text).toContain('"code":"SERVICE_UNAVAILABLE"');
    expect(text).not.toContain('event: done');
  });
});
