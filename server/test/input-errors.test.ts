// User input that used to give a 500 gets the documented 4xx.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectApiError } from '../../test/helpers/api-checks.js';
import { createApiKey } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

describe('embeddings longer than the context', () => {
  let server: TestServer;
  let apiKey: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'engine.context_size': 128, 'rate_limit.requests_per_minute': 10_000 } });
    const token = await login(server.url);
    apiKey = (await createApiKey(server.url, { token }, { name: 'emb', permissions: ['run_inference', 'read_models'] })).key;
  });
  afterAll(() => server.close());

  const long = 'lorem ipsum dolor sit amet '.repeat(200); // within max_prompt_chars, far beyond 128 tokens

  it('native: 400 naming the input, for a single text and for one of a list', async () => {
    const single = await call(server.url, 'POST', '/api/v1/embeddings', { apiKey, body: { model: 'demo-tiny', input: long } });
    expect(expectApiError(single, 400, 'VALIDATION_ERROR').details[0].path).toBe('body.input');
    const list = await call(server.url, 'POST', '/api/v1/embeddings', { apiKey, body: { model: 'demo-tiny', input: ['short', long] } });
    const error = expectApiError(list, 400, 'VALIDATION_ERROR');
    expect(error.details[0].path).toBe('body.input[1]');
    expect(error.details[0].message).toMatch(/tokens long/);
    // The model still embeds what fits.
    expect((await call(server.url, 'POST', '/api/v1/embeddings', { apiKey, body: { model: 'demo-tiny', input: 'short' } })).status).toBe(200);
  });

  it('/v1: 400 invalid_request_error with param input[1]', async () => {
    const res = await call(server.url, 'POST', '/v1/embeddings', { apiKey, body: { model: 'demo-tiny', input: ['short', long] } });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param: 'input[1]' });
  });
});
