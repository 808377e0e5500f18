import OpenAI, { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Permission } from '../src/gen/types.gen.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

const MODEL = 'demo-tiny';
const EMBEDDING_SIZE = 128; // the demo model's n_embd
const ALL_INFERENCE: Permission[] = ['read_models', 'run_inference', 'use_streaming'];

async function waitUntilReady(server: TestServer): Promise<void> {
  const deadline = Date.now() + 30_000;
  while ((await fetch(`${server.url}/health/ready`)).status !== 200) {
    if (Date.now() > deadline) throw new Error('the server did not get ready');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function createKey(server: TestServer, permissions: Permission[]): Promise<string> {
  const token = await login(server.url);
  const res = await call(server.url, 'POST', '/api/v1/auth/api-keys', { token, body: { name: `openai-${permissions.join('-')}`, permissions } });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.key as string;
}

/** The official client, pointed at the server's `/v1` with an Inferno API key, without retries. */
const openAIClient = (server: TestServer, apiKey: string) => new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0 });

/** Runs `request` and returns what it threw. */
async function failure(request: () => Promise<unknown>): Promise<unknown> {
  try {
    await request();
  } catch (error) {
    return error;
  }
  throw new Error('the request succeeded');
}

const until = async (condition: () => boolean, timeoutMs = 5_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for a condition');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

describe('OpenAI-compatible /v1 with the official openai client', () => {
  let server: TestServer;
  let client: OpenAI;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000 } });
    await waitUntilReady(server);
    client = openAIClient(server, await createKey(server, ALL_INFERENCE));
  });
  afterAll(() => server.close());

  const chatRequest = { model: MODEL, messages: [{ role: 'user' as const, content: 'Tell me a story.' }], seed: 7, temperature: 0.8, max_tokens: 40 };

  it('lists and describes the models', async () => {
    const models = [];
    for await (const model of client.models.list()) models.push(model);
    expect(models).toContainEqual({ id: MODEL, object: 'model', created: expect.any(Number), owned_by: 'inferno' });
    expect(await client.models.retrieve(MODEL)).toMatchObject({ id: MODEL, object: 'model' });
  });

  it('answers a chat completion in OpenAI shape; the same seed gives the same content', async () => {
    const completion = await client.chat.completions.create(chatRequest);
    expect(completion.id).toMatch(/^chatcmpl-/);
    expect(completion).toMatchObject({ object: 'chat.completion', model: MODEL, created: expect.any(Number) });
    expect(completion.choices).toHaveLength(1);
    const [choice] = completion.choices;
    expect(choice).toMatchObject({ index: 0, logprobs: null, message: { role: 'assistant' } });
    expect(typeof choice!.message.content).toBe('string');
    expect(['stop', 'length']).toContain(choice!.finish_reason);
    const usage = completion.usage!;
    expect(usage.prompt_tokens).toBeGreaterThan(0);
    expect(usage.completion_tokens).toBeGreaterThan(0);
    expect(usage.completion_tokens).toBeLessThanOrEqual(chatRequest.max_tokens);
    expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
    if (choice!.finish_reason === 'length') expect(usage.completion_tokens).toBe(chatRequest.max_tokens);

    const again = await client.chat.completions.create(chatRequest);
    expect(again.choices[0]!.message.content).toBe(choice!.message.content);
    expect(again.id).not.toBe(completion.id);
  });

  it('tolerates the OpenAI fields it does not use, developer messages and text parts', async () => {
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'developer', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'Hello' }] },
      ],
      max_completion_tokens: 5,
      user: 'someone',
      frequency_penalty: 0.5,
      presence_penalty: 0.1,
      logit_bias: { '1': 2 },
      response_format: { type: 'text' },
      stop: ['\n\n'],
      n: 1,
    });
    expect(completion.usage!.completion_tokens).toBeLessThanOrEqual(5);
  });

  it('streams a chat completion: the role first, content deltas equal the plain answer, then finish_reason and usage', async () => {
    const plain = await client.chat.completions.create(chatRequest);
    const stream = await client.chat.completions.create({ ...chatRequest, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);

    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    for (const chunk of chunks) {
      expect(chunk).toMatchObject({ id: chunks[0]!.id, object: 'chat.completion.chunk', model: MODEL });
      expect(chunk.id).toMatch(/^chatcmpl-/);
    }
    const content = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(content).toBe(plain.choices[0]!.message.content);
    const withChoice = chunks.filter((c) => c.choices.length > 0);
    expect(withChoice.at(-1)!.choices[0]!.finish_reason).toBe(plain.choices[0]!.finish_reason);
    expect(withChoice.slice(0, -1).every((c) => c.choices[0]!.finish_reason === null)).toBe(true);
    // The usage chunk comes last, with no choices.
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage).toEqual(plain.usage);
  });

  it('sends plain `data:` events and ends the stream with data: [DONE]', async () => {
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${client.apiKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ ...chatRequest, stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(res.headers.get('x-ratelimit-limit')).toBe('10000');
    const text = await res.text();
    expect(text).not.toMatch(/^event:/m);
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('answers and streams a text completion', async () => {
    const request = { model: MODEL, prompt: 'Once upon a time', seed: 3, temperature: 0.7, max_tokens: 30 };
    const completion = await client.completions.create(request);
    expect(completion.id).toMatch(/^cmpl-/);
    expect(completion).toMatchObject({ object: 'text_completion', model: MODEL });
    const [choice] = completion.choices;
    expect(choice).toMatchObject({ index: 0, logprobs: null });
    expect(['stop', 'length']).toContain(choice!.finish_reason);
    expect(completion.usage!.total_tokens).toBe(completion.usage!.prompt_tokens + completion.usage!.completion_tokens);

    const stream = await client.completions.create({ ...request, stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((c) => c.choices[0]!.text).join('')).toBe(choice!.text);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe(choice!.finish_reason);

    const echoed = await client.completions.create({ ...request, echo: true });
    expect(echoed.choices[0]!.text).toBe(request.prompt + choice!.text);
  });

  it('embeds a string and a list, in float and in base64 (the client default)', async () => {
    const one = await client.embeddings.create({ model: MODEL, input: 'hello world', encoding_format: 'float' });
    expect(one).toMatchObject({ object: 'list', model: MODEL });
    expect(one.data).toHaveLength(1);
    expect(one.data[0]).toMatchObject({ object: 'embedding', index: 0 });
    expect(one.data[0]!.embedding).toHaveLength(EMBEDDING_SIZE);
    expect(one.usage.prompt_tokens).toBeGreaterThan(0);
    expect(one.usage.total_tokens).toBe(one.usage.prompt_tokens);

    // No encoding_format: the client asks for base64 and decodes it.
    const list = await client.embeddings.create({ model: MODEL, input: ['hello world', 'something else'] });
    expect(list.data.map((d) => d.index)).toEqual([0, 1]);
    for (const item of list.data) expect(item.embedding).toHaveLength(EMBEDDING_SIZE);
    expect(list.data[0]!.embedding).toEqual(one.data[0]!.embedding.map((v) => Math.fround(v)));
    expect(list.data[1]!.embedding).not.toEqual(list.data[0]!.embedding);

    const again = await client.embeddings.create({ model: MODEL, input: 'hello world', encoding_format: 'float' });
    expect(again.data[0]!.embedding).toEqual(one.data[0]!.embedding);
  });

  it('surfaces errors as the client’s typed errors, in OpenAI’s error shape', async () => {
    const badKey = openAIClient(server, `inf_${'0'.repeat(40)}`);
    const unauthorized = await failure(() => badKey.models.list());
    expect(unauthorized).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(unauthorized).toMatchObject({ status: 401, type: 'authentication_error', code: 'invalid_api_key' });
    expect((unauthorized as APIError).headers!.get('x-request-id')).toBeTruthy();

    const unknownModel = await failure(() => client.chat.completions.create({ ...chatRequest, model: 'gpt-4o' }));
    expect(unknownModel).toBeInstanceOf(OpenAI.NotFoundError);
    expect(unknownModel).toMatchObject({ status: 404, type: 'not_found_error', code: 'model_not_found', param: 'model' });
    const unknownStreamModel = await failure(() => client.chat.completions.create({ ...chatRequest, model: 'gpt-4o', stream: true }));
    expect(unknownStreamModel).toBeInstanceOf(OpenAI.NotFoundError);
    expect(await failure(() => client.embeddings.create({ model: 'gpt-4o', input: 'x' }))).toBeInstanceOf(OpenAI.NotFoundError);

    const tooManyChoices = await failure(() => client.chat.completions.create({ ...chatRequest, n: 17 })); // [limits] max_choices: 16
    expect(tooManyChoices).toBeInstanceOf(OpenAI.BadRequestError);
    expect(tooManyChoices).toMatchObject({ status: 400, type: 'invalid_request_error', param: 'n' });

    const badType = await failure(() => client.chat.completions.create({ ...chatRequest, temperature: 'hot' as unknown as number }));
    expect(badType).toMatchObject({ status: 400, param: 'temperature' });
    const badMessage = await failure(() => client.chat.completions.create({ ...chatRequest, messages: [{ role: 'user', content: 42 as unknown as string }] }));
    expect(badMessage).toMatchObject({ status: 400, param: 'messages[0].content' });

    const tooLong = await failure(() => client.completions.create({ model: MODEL, prompt: 'x'.repeat(server.config.limits.max_prompt_chars + 1) }));
    expect(tooLong).toBeInstanceOf(OpenAI.BadRequestError);
    expect(tooLong).toMatchObject({ param: 'prompt' });

    const wrongSize = await failure(() => client.embeddings.create({ model: MODEL, input: 'x', dimensions: 64 }));
    expect(wrongSize).toMatchObject({ status: 400, param: 'dimensions' });
  });

  it('applies the native permissions: read_models, run_inference, and use_streaming for streams', async () => {
    const readOnly = openAIClient(server, await createKey(server, ['read_models']));
    expect((await readOnly.models.list()).data.length).toBeGreaterThan(0);
    const denied = await failure(() => readOnly.chat.completions.create(chatRequest));
    expect(denied).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(denied).toMatchObject({ status: 403, type: 'permission_error' });
    expect(await failure(() => readOnly.embeddings.create({ model: MODEL, input: 'x' }))).toBeInstanceOf(OpenAI.PermissionDeniedError);

    const inferenceOnly = openAIClient(server, await createKey(server, ['run_inference']));
    expect(await failure(() => inferenceOnly.models.list())).toBeInstanceOf(OpenAI.PermissionDeniedError);

    const noStreaming = openAIClient(server, await createKey(server, ['read_models', 'run_inference']));
    expect((await noStreaming.chat.completions.create(chatRequest)).choices).toHaveLength(1);
    expect(await failure(() => noStreaming.chat.completions.create({ ...chatRequest, stream: true }))).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(await failure(() => noStreaming.completions.create({ model: MODEL, prompt: 'x', stream: true }))).toBeInstanceOf(OpenAI.PermissionDeniedError);
  });
});

describe('OpenAI-compatible /v1 under load limits', () => {
  it('refuses past the rate limit with RateLimitError (429), Retry-After and X-RateLimit-* headers', async () => {
    const server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 3 } });
    try {
      const client = openAIClient(server, await createKey(server, ALL_INFERENCE));
      // The key's owner spent 1 of the budget creating it (keys and sessions of a user share one).
      for (let i = 0; i < 2; i++) await client.models.list();
      const refused = await failure(() => client.models.list());
      expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
      expect(refused).toMatchObject({ status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded' });
      const headers = (refused as APIError).headers!;
      expect(Number(headers.get('retry-after'))).toBeGreaterThan(0);
      expect(headers.get('x-ratelimit-limit')).toBe('3');
      expect(headers.get('x-ratelimit-remaining')).toBe('0');
      expect(Number(headers.get('x-ratelimit-reset'))).toBeGreaterThan(Date.now() / 1000);
    } finally {
      await server.close();
    }
  });

  it('answers 503 with Retry-After when the queue is full, and drops a queued request whose client went away', async () => {
    const server = await startTestServer({ settings: { 'engine.parallel': 1, 'engine.max_queue': 1, 'rate_limit.requests_per_minute': 10_000 } });
    try {
      await waitUntilReady(server);
      const client = openAIClient(server, await createKey(server, ALL_INFERENCE));
      const request = { model: MODEL, messages: [{ role: 'user' as const, content: 'hi' }], max_tokens: 5 };
      // Hold the only sequence, so the next request waits and the one after finds the queue full.
      const held = await server.engine.reserve(MODEL);
      const stats = () => server.engine.stats().find((s) => s.model === MODEL)!;
      try {
        const queued = client.chat.completions.create(request);
        queued.catch(() => undefined); // awaited below; not an unhandled rejection if an assertion fails first
        await until(() => stats().waiting === 1);
        const busy = await failure(() => client.chat.completions.create(request));
        expect(busy).toBeInstanceOf(OpenAI.InternalServerError);
        expect(busy).toMatchObject({ status: 503, type: 'server_error' });
        expect(Number((busy as APIError).headers!.get('retry-after'))).toBeGreaterThan(0);
        held.release();
        expect((await queued).choices).toHaveLength(1);
      } finally {
        held.release();
      }

      // A stream that is still waiting for a sequence when its client leaves gives up its place.
      const again = await server.engine.reserve(MODEL);
      try {
        const stream = await client.chat.completions.create({ ...request, stream: true }); // opens once it has waited 200 ms
        expect(stats().waiting).toBe(1);
        stream.controller.abort();
        await until(() => stats().waiting === 0);
      } finally {
        again.release();
      }
      await until(() => stats().busy === 0);
    } finally {
      await server.close();
    }
  });
});
