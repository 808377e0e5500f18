/**
 * Hostile GGUF files: each kind is refused at upload with a 400 that says why (and names no path),
 * and, dropped into the models dir, is listed `invalid` with the reason and refused for load and
 * inference with 409; none of them keeps the demo model from being written into a dir of only them.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getLlama } from 'node-llama-cpp';
import { GGML_TYPES, readGgufInfo, GgufFormatError } from '../src/engine/gguf-reader.js';
import { GgmlType, gguf, writeGguf } from '../src/engine/gguf-writer.js';
import { checkModelFile } from '../src/engine/model-catalog.js';
import { expectApiError } from '../../test/helpers/api-checks.js';
import { buildGguf } from '../../test/helpers/gguf-builder.js';
import { createApiKey } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

/** Each hostile kind, and the reason it must be refused with. */
const HOSTILE: Record<string, { bytes: () => Buffer; reason: RegExp }> = {
  'offset-2-50': { bytes: () => buildGguf({ tensors: [{ name: 't', dims: [32, 4], type: 0, offset: 2n ** 50n }] }), reason: /offset 1125899906842624; expected 0/ },
  'dims-0': { bytes: () => buildGguf({ tensors: [{ name: 't', dims: [32, 0], type: 0, offset: 0 }] }), reason: /dimension of 0/ },
  'dims-2-40': { bytes: () => buildGguf({ tensors: [{ name: 't', dims: [32, 2n ** 40n], type: 0, offset: 0 }] }), reason: /dimension of 1099511627776/ },
  'dims-overflow': { bytes: () => buildGguf({ tensors: [{ name: 't', dims: [2 ** 32, 2 ** 32, 2 ** 32], type: 0, offset: 0 }] }), reason: /more elements than the file could hold/ },
  'unknown-type': { bytes: () => buildGguf({ tensors: [{ name: 't', dims: [32, 4], type: 99, offset: 0 }] }), reason: /unknown ggml type 99/ },
  'truncated-data': { bytes: () => buildGguf({ dataBytes: 100 }), reason: /Truncated: the tensor data needs/ },
  'overlapping-tensors': {
    bytes: () => buildGguf({ tensors: [{ name: 'a', dims: [32, 4], type: 0, offset: 0 }, { name: 'b', dims: [32], type: 0, offset: 64 }], dataBytes: 1024 }),
    reason: /offset 64; expected 512/,
  },
  'huge-arrays': { bytes: () => buildGguf({ arrays: Array.from({ length: 5 }, (_, i) => ({ key: `junk.${i}`, length: 4 * 1024 * 1024 })) }), reason: /more than 16777216 items together/ },
  'no-architecture': { bytes: () => buildGguf({ architecture: null }), reason: /No general\.architecture/ },
  'random-bytes': { bytes: () => randomBytes(1024), reason: /Not a GGUF file/ },
};

describe('GGUF validation (reader)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-gguf-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('knows exactly the tensor types of the bundled llama.cpp, with its block and type sizes', async () => {
    const llama = await getLlama({ gpu: false, build: 'never', progressLogs: false });
    try {
      // Internal to node-llama-cpp, but the ground truth: what the loader itself will compute.
      const bindings = (llama as unknown as { _bindings: { getBlockSizeForGgmlType(id: number): number | undefined; getTypeSizeForGgmlType(id: number): number | undefined } })._bindings;
      const known: Record<number, { block: number; bytes: number }> = {};
      for (let id = 0; id < 256; id++) {
        const block = bindings.getBlockSizeForGgmlType(id);
        const bytes = bindings.getTypeSizeForGgmlType(id);
        if (block && bytes) known[id] = { block, bytes };
      }
      expect(Object.fromEntries(Object.entries(GGML_TYPES).map(([id, t]) => [id, { block: t.block, bytes: t.bytes }]))).toEqual(known);
    } finally {
      await llama.dispose();
    }
  });

  it('accepts a well-formed file, and refuses each hostile kind with a reason that names no path', async () => {
    const good = path.join(dir, 'good.gguf');
    writeFileSync(good, buildGguf());
    expect((await readGgufInfo(good)).tensors).toEqual([{ name: 'token_embd.weight', dims: [32, 4], type: 'F32', offset: 0, bytes: 512 }]);
    for (const [kind, { bytes, reason }] of Object.entries(HOSTILE)) {
      const file = path.join(dir, `${kind}.gguf`);
      writeFileSync(file, bytes());
      const error = await readGgufInfo(file).then(() => undefined, (e: unknown) => e);
      expect(error, kind).toBeInstanceOf(GgufFormatError);
      expect((error as Error).message, kind).toMatch(reason);
      expect((error as Error).message, kind).not.toContain(dir);
    }
  });
});

it('a context length that is no count (negative, fractional) is reported as null, never as given', async () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'inferno-ctx-'));
  try {
    const tensors = [{ name: 'token_embd.weight', dims: [32, 4], type: GgmlType.F32, data: () => [new Float32Array(128)] }];
    for (const [name, value, expected] of [['negative', gguf.i32(-5), null], ['fraction', gguf.f32(1.5), null], ['count', gguf.u32(2048), 2048]] as const) {
      const file = path.join(root, `${name}.gguf`);
      await writeGguf(file, { 'general.architecture': gguf.string('llama'), 'llama.context_length': value }, tensors);
      expect(await checkModelFile(file), name).toMatchObject({ valid: true, contextLength: expected });
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

describe('hostile GGUF files over HTTP', () => {
  let server: TestServer;
  let token: string;
  let apiKey: string;
  let modelsDir: string;
  let root: string;

  const upload = async (id: string, body: Buffer) => {
    const res = await fetch(`${server.url}/api/v1/models?id=${id}`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream' }, body: new Uint8Array(body) });
    return { status: res.status, body: (await res.json()) as any };
  };

  beforeAll(async () => {
    // A models dir holding only a file of random bytes: the demo model must still be written.
    root = mkdtempSync(path.join(os.tmpdir(), 'inferno-hostile-'));
    modelsDir = path.join(root, 'models');
    mkdirSync(modelsDir);
    writeFileSync(path.join(modelsDir, 'junk.gguf'), randomBytes(1024));
    server = await startTestServer({ modelsDir, settings: { 'rate_limit.requests_per_minute': 100_000 } });
    token = await login(server.url);
    apiKey = (await createApiKey(server.url, { token }, { name: 'use', permissions: ['read_models', 'run_inference'] })).key;
  });
  afterAll(async () => {
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("a header's architecture longer than the spec's bound is listed cut to it", async () => {
    expect((await upload('long-arch', buildGguf({ architecture: 'a'.repeat(5000) }))).status).toBe(201);
    const model = await call(server.url, 'GET', '/api/v1/models/long-arch', { token });
    expect(model.status).toBe(200);
    expect(model.body.architecture).toMatch(/^a{127}…$/);
    expect((await call(server.url, 'DELETE', '/api/v1/models/long-arch', { token })).status).toBe(204);
  });

  it('a dir of only an invalid file still gets the demo model; the file is reported at start and listed invalid', async () => {
    const list = await call(server.url, 'GET', '/api/v1/models', { token });
    const byId = Object.fromEntries(list.body.data.map((m: { id: string }) => [m.id, m]));
    expect(byId['demo-tiny']).toMatchObject({ state: 'available', invalid_reason: null, architecture: 'llama' });
    expect(byId.junk).toMatchObject({ state: 'invalid', invalid_reason: expect.stringMatching(/Not a GGUF file/), architecture: null, size_bytes: 1024 });
    const warning = server.logs.find((line) => line.includes('invalid model file'));
    expect(warning).toContain('"file":"junk.gguf"');
    expect(warning).toContain('Not a GGUF file');
    expect(warning).not.toContain(modelsDir);
    // OpenAI clients only see models they can use.
    const openaiList = await call(server.url, 'GET', '/v1/models', { apiKey });
    expect(openaiList.body.data.map((m: { id: string }) => m.id)).toEqual(['demo-tiny']);
  });

  it('an invalid model is refused for load and inference with 409 and the reason, on both APIs', async () => {
    const load = await call(server.url, 'POST', '/api/v1/models/junk/load', { token });
    expect(expectApiError(load, 409, 'CONFLICT').details).toEqual({ model: 'junk', reason: expect.stringMatching(/Not a GGUF file/) });
    expectApiError(await call(server.url, 'POST', '/api/v1/inference', { apiKey, body: { model: 'junk', prompt: 'hi' } }), 409, 'CONFLICT');
    expectApiError(await call(server.url, 'POST', '/api/v1/embeddings', { apiKey, body: { model: 'junk', input: 'hi' } }), 409, 'CONFLICT');
    const chat = await call(server.url, 'POST', '/v1/chat/completions', { apiKey, body: { model: 'junk', messages: [{ role: 'user', content: 'hi' }] } });
    expect(chat.status).toBe(409);
    expect(chat.body.error).toMatchObject({ type: 'invalid_request_error', param: 'model', code: 'model_invalid' });
  });

  it('each hostile kind is refused at upload with 400 and its reason, with no path in the answer, and nothing is kept', async () => {
    for (const [kind, { bytes, reason }] of Object.entries(HOSTILE)) {
      const res = await upload(`up-${kind}`, bytes());
      const error = expectApiError(res, 400, 'VALIDATION_ERROR');
      expect(error.details[0].message, kind).toMatch(reason);
      const text = JSON.stringify(res.body);
      expect(text, kind).not.toContain(modelsDir);
      expect(text, kind).not.toMatch(/\.upload-|\/tmp\//);
    }
    expect(readdirSync(modelsDir).filter((name) => name.startsWith('up-') || name.startsWith('.upload-'))).toEqual([]);
  });

  it('each hostile kind dropped into the dir is listed invalid with its reason and refused with 409', async () => {
    for (const [kind, { bytes }] of Object.entries(HOSTILE)) writeFileSync(path.join(modelsDir, `drop-${kind}.gguf`), bytes());
    const list = await call(server.url, 'GET', '/api/v1/models', { token });
    for (const [kind, { reason }] of Object.entries(HOSTILE)) {
      const model = list.body.data.find((m: { id: string }) => m.id === `drop-${kind}`);
      expect(model, kind).toMatchObject({ state: 'invalid', invalid_reason: expect.stringMatching(reason) });
      const load = await call(server.url, 'POST', `/api/v1/models/drop-${kind}/load`, { token });
      expect(expectApiError(load, 409, 'CONFLICT').message, kind).toMatch(reason);
    }
  });

  it('a file that passes validation but that llama.cpp cannot load is a 409, never a 500', async () => {
    // Well-formed GGUF, but a llama model needs far more tensors than this one.
    writeFileSync(path.join(modelsDir, 'hollow.gguf'), buildGguf());
    expect((await call(server.url, 'GET', '/api/v1/models/hollow', { token })).body.state).toBe('available');
    const load = await call(server.url, 'POST', '/api/v1/models/hollow/load', { token });
    const error = expectApiError(load, 409, 'CONFLICT');
    expect(error.details).toMatchObject({ model: 'hollow', reason: expect.stringMatching(/llama\.cpp could not load/) });
    expect(JSON.stringify(load.body)).not.toContain(modelsDir);
    // From now on it is listed invalid, and refused without another attempt at loading it.
    const loadWarnings = () => server.logs.filter((line) => line.includes('llama.cpp could not load the model')).length;
    expect(loadWarnings()).toBe(1);
    expect((await call(server.url, 'GET', '/api/v1/models/hollow', { token })).body).toMatchObject({ state: 'invalid', invalid_reason: expect.stringMatching(/llama\.cpp could not load/) });
    const inference = await call(server.url, 'POST', '/api/v1/inference', { apiKey, body: { model: 'hollow', prompt: 'hi' } });
    expectApiError(inference, 409, 'CONFLICT');
    expect(loadWarnings()).toBe(1);
    // A new version of the file is validated afresh.
    writeFileSync(path.join(modelsDir, 'hollow.gguf'), buildGguf({ dataBytes: 1024 }));
    expect((await call(server.url, 'GET', '/api/v1/models/hollow', { token })).body.state).toBe('available');
  });

  it('a 20 MB header of arrays is refused in linear time while /health stays fast', async () => {
    const bytes = HOSTILE['huge-arrays']!.bytes();
    let worstMs = 0;
    let done = false;
    const probe = (async () => {
      while (!done) {
        const started = performance.now();
        await fetch(`${server.url}/health`).then((r) => r.arrayBuffer());
        worstMs = Math.max(worstMs, performance.now() - started);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    const res = await upload('huge', bytes);
    done = true;
    await probe;
    expectApiError(res, 400, 'VALIDATION_ERROR');
    expect(worstMs).toBeLessThan(2000);
  });
});
