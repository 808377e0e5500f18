import { build } from 'esbuild';
import { afterEach, describe, expect, it } from 'vitest';
import { InfernoClient, ResponseValidationError } from '../src/index.js';
import { responseValidator } from '../src/zod.js';
import { type LocalServer, MODEL_LIST, sendJson, startLocalServer } from './helpers/http.js';

let server: LocalServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const badList = { ...MODEL_LIST, data: [{ ...MODEL_LIST.data[0], size_bytes: 'big' }] };

describe('validateResponses', () => {
  it('passes a response that matches the schema', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 200, MODEL_LIST));
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k', validateResponses: true, responseValidator });
    await expect(client.models.list()).resolves.toEqual(MODEL_LIST);
  });

  it('throws ResponseValidationError naming the field that does not match', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 200, badList));
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k', validateResponses: true, responseValidator });
    const error = (await client.models.list().catch((e: unknown) => e)) as ResponseValidationError;
    expect(error).toBeInstanceOf(ResponseValidationError);
    expect(error.operation).toBe('listModels');
    expect(error.issues.map((i) => i.path)).toEqual(['data[0].size_bytes']);
    expect(error.message).toMatch(/^Response of listModels does not match the API schema at data\[0\]\.size_bytes: /);
    expect(server.requests).toHaveLength(1); // a bad body is not retried
  });

  it('can be switched per request', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 200, badList));
    const on = new InfernoClient({ baseUrl: server.url, apiKey: 'k', validateResponses: true, responseValidator });
    await expect(on.models.list({ validateResponses: false })).resolves.toEqual(badList);
    const off = new InfernoClient({ baseUrl: server.url, apiKey: 'k', responseValidator });
    await expect(off.models.list()).resolves.toEqual(badList);
    await expect(off.models.list({ validateResponses: true })).rejects.toBeInstanceOf(ResponseValidationError);
  });

  it('validates empty (204) responses too', async () => {
    server = await startLocalServer((_req, res) => void res.writeHead(204).end());
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k', validateResponses: true, responseValidator });
    await expect(client.apiKeys.revoke('0d9c4f3e-3f5b-4a37-9e0b-6a2f1d1c2b3a')).resolves.toBeUndefined();
  });

  it('refuses validateResponses without a validator, saying where to get one', () => {
    expect(() => new InfernoClient({ baseUrl: 'http://x', validateResponses: true })).toThrow(/@inferno\/sdk\/zod/);
  });

  it('reports a 200 whose body is not JSON', async () => {
    server = await startLocalServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"object": "list", "data": [');
    });
    const error = await new InfernoClient({ baseUrl: server.url, apiKey: 'k' }).models.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ResponseValidationError);
    expect((error as Error).message).toMatch(/listModels .* the body is not valid JSON/);
    expect(server.requests).toHaveLength(1);
  });
});

describe('bundle split', () => {
  async function bundledInputs(entry: string): Promise<string[]> {
    const result = await build({
      entryPoints: [entry],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    return Object.keys(result.metafile.inputs);
  }

  it('keeps zod out of the main entry and in the zod entry', async () => {
    const main = await bundledInputs('sdk/src/index.ts');
    expect(main.filter((file) => file.includes('node_modules/zod/'))).toEqual([]);
    expect(main.some((file) => file.endsWith('sdk/src/gen/zod.gen.ts'))).toBe(false);
    const withZod = await bundledInputs('sdk/src/zod.ts');
    expect(withZod.some((file) => file.includes('node_modules/zod/'))).toBe(true);
  });

  it('bundles no Node built-ins for the browser', async () => {
    const main = await bundledInputs('sdk/src/index.ts');
    expect(main.filter((file) => file.startsWith('node:') || !/\.(ts|js|mjs)$/.test(file))).toEqual([]);
  });
});
