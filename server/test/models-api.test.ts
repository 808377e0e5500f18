/**
 * The models API: list, get, upload (raw GGUF body), delete, load and unload, on a real server
 * with the generated demo-tiny model and a second demo model written for the test.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { writeDemoModel } from '../src/engine/demo-model.js';
import { createApiKey, createUser, streamRequest } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';
import { expectApiError } from '../../test/helpers/api-checks.js';

const PASSWORD = 'a-long-user-password-1';

/** A raw request: the path is sent exactly as given (fetch would resolve `..` and `%2e%2e` segments). */
function rawRequest(url: string, method: string, rawPath: string, headers: Record<string, string> = {}, body?: Buffer): Promise<{ status: number; body: any }> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: target.hostname, port: target.port, method, path: rawPath, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          // keep text
        }
        resolve({ status: res.statusCode!, body: parsed });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('models API', () => {
  let server: TestServer;
  let token: string;
  let userToken: string;
  let tmp: string;
  let secondBytes: Buffer;
  let thirdBytes: Buffer;

  const upload = (query: string, body: Buffer | string, contentType: string | null = 'application/octet-stream', auth: { token?: string; apiKey?: string } = { token }) => {
    const headers: Record<string, string> = {};
    if (contentType) headers['Content-Type'] = contentType;
    if (auth.token) headers.Authorization = `Bearer ${auth.token}`;
    if (auth.apiKey) headers['X-API-Key'] = auth.apiKey;
    return fetch(`${server.url}/api/v1/models?${query}`, { method: 'POST', headers, body: typeof body === 'string' ? body : new Uint8Array(body) }).then(async (res) => {
      const text = await res.text();
      let parsed: any = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // keep text
      }
      return { status: res.status, headers: res.headers, body: parsed };
    });
  };
  const get = (route: string, auth = token) => call(server.url, 'GET', route, { token: auth });
  const post = (route: string, auth = token) => call(server.url, 'POST', route, { token: auth });
  const del = (route: string, auth = token) => call(server.url, 'DELETE', route, { token: auth });
  const listedIds = async () => ((await get('/api/v1/models')).body.data as { id: string }[]).map((m) => m.id);
  /** Request log lines of model uploads with this status. */
  const uploadLogLines = (status: number) =>
    server.logs.filter((line) => line.includes('"endpoint":"/api/v1/models"') && line.includes('"method":"POST"') && line.includes(`"status":${status}`)).length;
  /** Everything in the models dir, hidden files included. */
  const modelsDirFiles = () => readdirSync(server.modelsDir).sort();

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'inferno-models-test-'));
    await writeDemoModel(path.join(tmp, 'second.gguf'), { preset: 'tiny', seed: 7 });
    await writeDemoModel(path.join(tmp, 'third.gguf'), { preset: 'tiny', seed: 8 });
    secondBytes = readFileSync(path.join(tmp, 'second.gguf'));
    thirdBytes = readFileSync(path.join(tmp, 'third.gguf'));
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 100_000, 'models.max_loaded': 1 } });
    token = await login(server.url);
    await createUser(server.url, { token }, { username: 'plainuser', password: PASSWORD, role: 'user' });
    userToken = await login(server.url, 'plainuser', PASSWORD);
    const deadline = Date.now() + 30_000;
    while ((await call(server.url, 'GET', '/health/ready')).status !== 200) {
      if (Date.now() > deadline) throw new Error('server never became ready');
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  afterAll(async () => {
    await server?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('lists and gets demo-tiny with its header facts', async () => {
    const list = await get('/api/v1/models');
    expect(list.status).toBe(200);
    expect(list.body.object).toBe('list');
    expect(list.body.data.map((m: { id: string }) => m.id)).toEqual(['demo-tiny']);
    const model = list.body.data[0];
    expect(model).toMatchObject({
      id: 'demo-tiny',
      object: 'model',
      loaded: false,
      architecture: 'llama',
      context_length: 2048,
      file_type: 'F16',
    });
    expect(model.parameter_count).toBeGreaterThan(400_000);
    expect(model.parameter_count).toBeLessThan(1_000_000);
    expect(model.size_bytes).toBe(readFileSync(path.join(server.modelsDir, 'demo-tiny.gguf')).length);
    expect(Number.isNaN(Date.parse(model.modified_at))).toBe(false);

    const one = await get('/api/v1/models/demo-tiny');
    expect(one.status).toBe(200);
    expect(one.body).toEqual(model);
    expectApiError(await get('/api/v1/models/no-such-model'), 404, 'NOT_FOUND');
    // A plain user may read models.
    expect((await get('/api/v1/models', userToken)).status).toBe(200);
  });

  it('uploads a second model (201, listed, same bytes on disk); the same id again is 409; overwrite=true is 201', async () => {
    const created = await upload('id=second', secondBytes);
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ id: 'second', object: 'model', architecture: 'llama', size_bytes: secondBytes.length, loaded: false, file_type: 'F16' });
    expect(await listedIds()).toEqual(['demo-tiny', 'second']);
    expect(readFileSync(path.join(server.modelsDir, 'second.gguf')).equals(secondBytes)).toBe(true);

    const again = await upload('id=second', thirdBytes);
    expectApiError(again, 409, 'CONFLICT');
    expect(readFileSync(path.join(server.modelsDir, 'second.gguf')).equals(secondBytes)).toBe(true);
    const explicitNo = await upload('id=second&overwrite=false', thirdBytes);
    expectApiError(explicitNo, 409, 'CONFLICT');

    const replaced = await upload('id=second&overwrite=true', thirdBytes);
    expect(replaced.status, JSON.stringify(replaced.body)).toBe(201);
    expect(readFileSync(path.join(server.modelsDir, 'second.gguf')).equals(thirdBytes)).toBe(true);
    // Put the seed-7 model back for the tests below.
    expect((await upload('id=second&overwrite=true', secondBytes)).status).toBe(201);
    expect(modelsDirFiles()).toEqual(['demo-tiny.gguf', 'second.gguf']);
  });

  it('overwriting a loaded model unloads it, and the new weights are used', async () => {
    const generate = () => call(server.url, 'POST', '/api/v1/inference', { token, body: { model: 'second', prompt: 'Hello world', seed: 3, max_tokens: 24 } });
    const before = await generate();
    expect(before.status).toBe(200);
    expect((await get('/api/v1/models/second')).body.loaded).toBe(true);
    const replaced = await upload('id=second&overwrite=true', thirdBytes);
    expect(replaced.status).toBe(201);
    expect(replaced.body.loaded).toBe(false);
    const after = await generate();
    expect(after.status).toBe(200);
    expect(after.body.text).not.toBe(before.body.text);
    expect((await upload('id=second&overwrite=true', secondBytes)).status).toBe(201);
    expect((await generate()).body.text).toBe(before.body.text);
    await post('/api/v1/models/second/unload');
  });

  it('a non-GGUF body is 400 and leaves no file behind', async () => {
    const bad = await upload('id=notgguf', Buffer.from('this is not a model file at all, just text'.repeat(20)));
    expectApiError(bad, 400, 'VALIDATION_ERROR');
    // GGUF magic followed by garbage: caught by the header check at the end.
    const truncated = Buffer.concat([secondBytes.subarray(0, 4), Buffer.alloc(200, 0xff)]);
    expectApiError(await upload('id=notgguf', truncated), 400, 'VALIDATION_ERROR');
    // A real model cut short in its tensor data.
    expectApiError(await upload('id=notgguf', secondBytes.subarray(0, 64)), 400, 'VALIDATION_ERROR');
    expectApiError(await upload('id=notgguf', Buffer.alloc(0)), 400, 'VALIDATION_ERROR');
    expect(modelsDirFiles()).toEqual(['demo-tiny.gguf', 'second.gguf']);
    expect(await listedIds()).toEqual(['demo-tiny', 'second']);
  });

  it('a large non-GGUF body sent in chunks is answered 400 (the response reaches the client) and leaves nothing behind', async () => {
    const logged = uploadLogLines(400);
    const res = await streamRequest(`${server.url}/api/v1/models?id=notgguf`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream' },
      chunk: Buffer.alloc(16 * 1024, 0x41),
      chunks: 64,
      delayMs: 1,
    });
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.error.code).toBe('VALIDATION_ERROR');
    await new Promise((r) => setTimeout(r, 50));
    expect(modelsDirFiles()).toEqual(['demo-tiny.gguf', 'second.gguf']);
    // The request is logged like any other (the log line is written when the response ends).
    expect(uploadLogLines(400)).toBe(logged + 1);
    expect((await call(server.url, 'GET', '/health')).status).toBe(200);
  });

  it('an upload over models.max_upload_bytes is 413 and leaves nothing behind', async () => {
    const original = server.config.models.max_upload_bytes;
    // The route reads the limit per request, as it would after a config reload.
    server.config.models.max_upload_bytes = 4096;
    try {
      // Declared too large (Content-Length): refused before the body is read.
      const declared = await upload('id=toolarge', secondBytes);
      expectApiError(declared, 413, 'PAYLOAD_TOO_LARGE');
      // Chunked, no Content-Length: refused once 4,096 bytes have arrived.
      const logged = uploadLogLines(413);
      const chunked = await streamRequest(`${server.url}/api/v1/models?id=toolarge`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream' },
        chunk: secondBytes.subarray(0, 1024),
        chunks: 64,
        delayMs: 1,
      });
      expect(chunked.status, JSON.stringify(chunked.body)).toBe(413);
      expect(chunked.body.error.code).toBe('PAYLOAD_TOO_LARGE');
      expect(chunked.bytesSentBeforeResponse).toBeLessThan(chunked.bytesOffered);
      await new Promise((r) => setTimeout(r, 50));
      expect(uploadLogLines(413), 'the refused upload has its request log line').toBe(logged + 1);
    } finally {
      server.config.models.max_upload_bytes = original;
    }
    await new Promise((r) => setTimeout(r, 50)); // the temp file is removed as the request ends
    expect(modelsDirFiles()).toEqual(['demo-tiny.gguf', 'second.gguf']);
  });

  it('a body that is not application/octet-stream is 415', async () => {
    expectApiError(await upload('id=wrongtype', secondBytes, 'application/json'), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectApiError(await upload('id=wrongtype', 'GGUF', 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectApiError(await upload('id=wrongtype', secondBytes, 'multipart/form-data; boundary=x'), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expect(modelsDirFiles()).toEqual(['demo-tiny.gguf', 'second.gguf']);
  });

  it('load and unload; with max_loaded 1, loading a second model unloads the first (LRU)', async () => {
    expect(server.config.models.max_loaded).toBe(1);
    const loaded = await post('/api/v1/models/demo-tiny/load');
    expect(loaded.status, JSON.stringify(loaded.body)).toBe(200);
    expect(loaded.body).toMatchObject({ id: 'demo-tiny', loaded: true });
    expect((await get('/api/v1/models/demo-tiny')).body.loaded).toBe(true);
    // Loading again is harmless.
    expect((await post('/api/v1/models/demo-tiny/load')).body.loaded).toBe(true);

    const unloaded = await post('/api/v1/models/demo-tiny/unload');
    expect(unloaded.status).toBe(200);
    expect(unloaded.body).toMatchObject({ id: 'demo-tiny', loaded: false });
    // Unloading what is not loaded is harmless too.
    expect((await post('/api/v1/models/demo-tiny/unload')).body.loaded).toBe(false);

    expect((await post('/api/v1/models/demo-tiny/load')).body.loaded).toBe(true);
    const second = await post('/api/v1/models/second/load');
    expect(second.status).toBe(200);
    expect(second.body.loaded).toBe(true);
    expect((await get('/api/v1/models/demo-tiny')).body.loaded).toBe(false);
    expect(server.engine.loadedIds()).toEqual(['second']);

    // First use loads too, and evicts the other.
    const used = await call(server.url, 'POST', '/api/v1/inference', { token, body: { model: 'demo-tiny', prompt: 'Hi', seed: 1, max_tokens: 4 } });
    expect(used.status).toBe(200);
    expect(server.engine.loadedIds()).toEqual(['demo-tiny']);
    const list = (await get('/api/v1/models')).body.data as { id: string; loaded: boolean }[];
    expect(Object.fromEntries(list.map((m) => [m.id, m.loaded]))).toEqual({ 'demo-tiny': true, second: false });

    expectApiError(await post('/api/v1/models/no-such-model/load'), 404, 'NOT_FOUND');
    expectApiError(await post('/api/v1/models/no-such-model/unload'), 404, 'NOT_FOUND');
  });

  it('permissions: write_models for upload/load/unload, delete_models for delete', async () => {
    // A `user` has read_models but neither write_models nor delete_models.
    expectApiError(await upload('id=byuser', secondBytes, 'application/octet-stream', { token: userToken }), 403, 'PERMISSION_DENIED');
    expectApiError(await post('/api/v1/models/second/load', userToken), 403, 'PERMISSION_DENIED');
    expectApiError(await post('/api/v1/models/second/unload', userToken), 403, 'PERMISSION_DENIED');
    expectApiError(await del('/api/v1/models/second', userToken), 403, 'PERMISSION_DENIED');

    // An admin's key with write_models but not delete_models: may upload and load, not delete.
    const key = await createApiKey(server.url, { token }, { name: 'writer', permissions: ['read_models', 'write_models'] });
    const byKey = await upload('id=bykey', secondBytes, 'application/octet-stream', { apiKey: key.key });
    expect(byKey.status, JSON.stringify(byKey.body)).toBe(201);
    expect((await call(server.url, 'POST', '/api/v1/models/bykey/load', { apiKey: key.key })).status).toBe(200);
    expectApiError(await call(server.url, 'DELETE', '/api/v1/models/bykey', { apiKey: key.key }), 403, 'PERMISSION_DENIED');
    // A key without write_models may not upload.
    const reader = await createApiKey(server.url, { token }, { name: 'reader', permissions: ['read_models'] });
    expectApiError(await upload('id=byreader', secondBytes, 'application/octet-stream', { apiKey: reader.key }), 403, 'PERMISSION_DENIED');
    expectApiError(await call(server.url, 'POST', '/api/v1/models/bykey/load', { apiKey: reader.key }), 403, 'PERMISSION_DENIED');
    // Without credentials: 401.
    expectApiError(await upload('id=anon', secondBytes, 'application/octet-stream', {}), 401, 'AUTHENTICATION_FAILED');

    expect(await listedIds()).toEqual(['bykey', 'demo-tiny', 'second']);
    expect(existsSync(path.join(server.modelsDir, 'byuser.gguf'))).toBe(false);
    expect(existsSync(path.join(server.modelsDir, 'byreader.gguf'))).toBe(false);
  });

  it('delete is 204: the model is unloaded, gone from the list and from disk', async () => {
    expect((await post('/api/v1/models/bykey/load')).body.loaded).toBe(true);
    const deleted = await del('/api/v1/models/bykey');
    expect(deleted.status).toBe(204);
    expect(server.engine.loadedIds()).not.toContain('bykey');
    expect(existsSync(path.join(server.modelsDir, 'bykey.gguf'))).toBe(false);
    expect(await listedIds()).toEqual(['demo-tiny', 'second']);
    expectApiError(await get('/api/v1/models/bykey'), 404, 'NOT_FOUND');
    expectApiError(await del('/api/v1/models/bykey'), 404, 'NOT_FOUND');
    expectApiError(await call(server.url, 'POST', '/api/v1/inference', { token, body: { model: 'bykey', prompt: 'Hi' } }), 404, 'NOT_FOUND');

    expect((await del('/api/v1/models/second')).status).toBe(204);
    expect(modelsDirFiles()).toEqual(['demo-tiny.gguf']);
  });

  it('invalid ids are 400 on every route and never reach the catalog or the filesystem', async () => {
    const catalogGet = vi.spyOn(server.catalog, 'get');
    const pathOf = vi.spyOn(server.catalog, 'pathOf');
    try {
      // Upload: the id is a query parameter.
      for (const id of ['../escaped', 'a/b', '..', '%2e%2e', '.hidden', '-dash', 'a%00b', '/abs', 'x'.repeat(129), '']) {
        const res = await upload(`id=${encodeURIComponent(id)}`, secondBytes);
        expectApiError(res, 400, 'VALIDATION_ERROR');
        expect((res.body.error.details as { path: string }[]).map((d) => d.path), id).toContain('query.id');
      }
      expectApiError(await upload('', secondBytes), 400, 'VALIDATION_ERROR'); // id missing

      // Path parameters, sent raw so nothing normalizes them on the way.
      const auth = { Authorization: `Bearer ${token}` };
      for (const encoded of ['%2e%2e', '..%2Fetc%2Fpasswd', 'a%2Fb', '%2E%2E%2F%2E%2E', '.hidden', '..%5Cwin', 'a%00b']) {
        for (const [method, suffix] of [['GET', ''], ['DELETE', ''], ['POST', '/load'], ['POST', '/unload']] as const) {
          const res = await rawRequest(server.url, method, `/api/v1/models/${encoded}${suffix}`, auth);
          expect(res.status, `${method} ${encoded}${suffix}: ${JSON.stringify(res.body)}`).toBe(400);
          expect(res.body.error.code).toBe('VALIDATION_ERROR');
        }
      }
      expect(catalogGet).not.toHaveBeenCalled();
      expect(pathOf).not.toHaveBeenCalled();
    } finally {
      catalogGet.mockRestore();
      pathOf.mockRestore();
    }
    // Unencoded dot segments never match a model route (404 no such route), and never escape either.
    for (const raw of ['/api/v1/models/../../etc/passwd', '/api/v1/models/./demo-tiny/../x']) {
      const res = await rawRequest(server.url, 'GET', raw, { Authorization: `Bearer ${token}` });
      expect([400, 404]).toContain(res.status);
    }
    expect(existsSync(path.join(server.modelsDir, '..', 'escaped.gguf'))).toBe(false);
    expect(modelsDirFiles()).toEqual(['demo-tiny.gguf']);
  });

  it('an id with ".." inside but no separator (the spec pattern allows it) is an ordinary file name: never 500', async () => {
    // `a..b` matches ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$: it names `a..b.gguf` in the models dir, nothing outside.
    const res = await upload('id=a..b', secondBytes);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.id).toBe('a..b');
    expect(modelsDirFiles()).toEqual(['a..b.gguf', 'demo-tiny.gguf']);
    expect((await get('/api/v1/models/a..b')).status).toBe(200);
    expect((await post('/api/v1/models/a..b/load')).body.loaded).toBe(true);
    expect((await del('/api/v1/models/a..b')).status).toBe(204);
    expect(modelsDirFiles()).toEqual(['demo-tiny.gguf']);
  });
});
