import net from 'node:net';
/**
 * POST /api/v1/inference and /api/v1/embeddings over HTTP, on the real llama.cpp engine with the
 * generated demo-tiny model (gibberish text, but deterministic per seed and with natural stops).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createUser, waitFor } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';
import { detailPaths, expectApiError, waitForReady } from '../../test/helpers/api-checks.js';
import { loadSpec } from '../../contract/src/spec.js';
import { createValidator } from '../../contract/src/validator.js';

const MODEL = 'demo-tiny';
const PASSWORD = 'a-long-guest-password-1';

// ---- helpers -------------------------------------------------------------------------------------

interface SseEvent {
  event: string;
  data: any;
}

/** Reads server-sent events off a fetch response body as they arrive (comments are skipped). */
async function* readEvents(response: Response): AsyncGenerator<SseEvent> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (data.length > 0) yield { event, data: JSON.parse(data.join('\n')) };
      }
    }
  } finally {
    reader.releaseLock();
  }
}

// ---- main server: parallel 2 ---------------------------------------------------------------------

describe('inference on demo-tiny', () => {
  let server: TestServer;
  let token: string;
  let guestToken: string;

  const post = (route: string, body: unknown, auth = token) => call(server.url, 'POST', route, { token: auth, body });
  const infer = (body: Record<string, unknown>, auth = token) => post('/api/v1/inference', { model: MODEL, ...body }, auth);
  const streamRequest = (body: Record<string, unknown>, signal?: AbortSignal) =>
    fetch(`${server.url}/api/v1/inference`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: MODEL, stream: true, ...body }),
      signal,
    });
  /** A whole stream: the concatenated token texts and the done event. */
  async function stream(body: Record<string, unknown>) {
    const response = await streamRequest(body);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events: SseEvent[] = [];
    for await (const event of readEvents(response)) events.push(event);
    const names = events.map((e) => e.event);
    expect(names.at(-1), JSON.stringify(events.at(-1))).toBe('done');
    expect(names.slice(0, -1).every((n) => n === 'token')).toBe(true);
    return { text: events.filter((e) => e.event === 'token').map((e) => e.data.text as string).join(''), done: events.at(-1)!.data, tokenEvents: names.length - 1 };
  }

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 100_000, 'engine.parallel': 2 } });
    await waitForReady(server.url);
    token = await login(server.url);
    await createUser(server.url, { token }, { username: 'guest1', password: PASSWORD, role: 'guest' });
    guestToken = await login(server.url, 'guest1', PASSWORD);
  });
  afterAll(() => server?.close());

  it('GET /health/ready is 200 with ready: true once the engine is up', async () => {
    const res = await call(server.url, 'GET', '/health/ready');
    expect(res.status).toBe(200);
    expect(res.body.ready).toBe(true);
  });

  it('a sync completion has the documented shape', async () => {
    const res = await infer({ prompt: 'Hello world', seed: 1, max_tokens: 32 });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const body = res.body;
    expect(body).toMatchObject({ object: 'inference', model: MODEL, text: expect.any(String) });
    expect(body.id).toMatch(/^inf_[0-9a-f]{32}$/);
    expect(Number.isInteger(body.created)).toBe(true);
    expect(Math.abs(body.created - Date.now() / 1000)).toBeLessThan(120);
    expect(['stop', 'length']).toContain(body.finish_reason);
    expect(body.usage.prompt_tokens).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBeLessThanOrEqual(32);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + body.usage.completion_tokens);
    for (const key of ['queued_ms', 'prompt_ms', 'generation_ms', 'total_ms', 'tokens_per_second']) {
      expect(typeof body.timings[key], key).toBe('number');
      expect(body.timings[key], key).toBeGreaterThanOrEqual(0);
    }
    expect(body.timings.total_ms).toBeGreaterThanOrEqual(body.timings.generation_ms);
    expect(Object.keys(body).sort()).toEqual(['created', 'finish_reason', 'id', 'model', 'object', 'text', 'timings', 'usage']);
  });

  it('the same seed gives the same text; different seeds give different texts', async () => {
    const a = await infer({ prompt: 'Once upon a time', seed: 1234, max_tokens: 40 });
    const b = await infer({ prompt: 'Once upon a time', seed: 1234, max_tokens: 40 });
    expect(a.status).toBe(200);
    expect(b.body.text).toBe(a.body.text);
    expect(b.body.usage).toEqual(a.body.usage);
    expect(b.body.finish_reason).toBe(a.body.finish_reason);

    const texts = new Set<string>();
    for (const seed of [1, 2, 3, 4, 5]) texts.add((await infer({ prompt: 'Once upon a time', seed, max_tokens: 40 })).body.text);
    expect(texts.size).toBeGreaterThanOrEqual(3);

    // Without temperature the documented default (0.8) samples, so the seed matters (above);
    // temperature 0 is greedy: the seed makes no difference.
    const greedy1 = await infer({ prompt: 'Once upon a time', temperature: 0, seed: 1, max_tokens: 20 });
    const greedy2 = await infer({ prompt: 'Once upon a time', temperature: 0, seed: 2, max_tokens: 20 });
    expect(greedy2.body.text).toBe(greedy1.body.text);
  });

  it('a stream carries the same text, finish reason and usage as the sync answer', async () => {
    for (const settings of [
      { prompt: 'Hello world', seed: 7, max_tokens: 48 },
      { prompt: 'Hello world', temperature: 0, max_tokens: 24 }, // length-limited
      { messages: [{ role: 'user', content: 'Hi there' }], seed: 3, max_tokens: 40 },
    ]) {
      const sync = await infer(settings);
      expect(sync.status).toBe(200);
      const streamed = await stream(settings);
      expect(streamed.text).toBe(sync.body.text);
      expect(streamed.done.finish_reason).toBe(sync.body.finish_reason);
      expect(streamed.done.usage).toEqual(sync.body.usage);
      expect(streamed.done.model).toBe(MODEL);
      expect(streamed.done.id).toMatch(/^inf_[0-9a-f]{32}$/);
      expect(Object.keys(streamed.done.timings).sort()).toEqual(['generation_ms', 'prompt_ms', 'queued_ms', 'tokens_per_second', 'total_ms']);
      if (streamed.text.length > 0) expect(streamed.tokenEvents).toBeGreaterThan(0);
    }
  });

  it('max_tokens: 5 ends with finish_reason length after exactly 5 tokens', async () => {
    // Greedy decoding of this prompt never samples the end-of-turn token (checked up to 2,000 tokens).
    const res = await infer({ prompt: 'Hello world', temperature: 0, max_tokens: 5 });
    expect(res.status).toBe(200);
    expect(res.body.finish_reason).toBe('length');
    expect(res.body.usage.completion_tokens).toBe(5);
    const streamed = await stream({ prompt: 'Hello world', temperature: 0, max_tokens: 5 });
    expect(streamed.done.finish_reason).toBe('length');
    expect(streamed.done.usage.completion_tokens).toBe(5);
  });

  it('a stop string from the unconstrained output cuts the text before it, finish_reason stop', async () => {
    const settings = { prompt: 'Hello world', temperature: 0, max_tokens: 60 };
    const free = await infer(settings);
    expect(free.status).toBe(200);
    expect(free.body.finish_reason).toBe('length');
    // A piece from the middle of the output (its first occurrence is cut at, not at the very start).
    const word = (free.body.text as string).slice(12, 16);
    const cut = (free.body.text as string).indexOf(word);
    expect(cut).toBeGreaterThan(0);

    const stopped = await infer({ ...settings, stop: word });
    expect(stopped.status).toBe(200);
    expect(stopped.body.finish_reason).toBe('stop');
    expect(stopped.body.text).toBe((free.body.text as string).slice(0, cut));
    expect(stopped.body.text).not.toContain(word);
    expect(stopped.body.usage.completion_tokens).toBeLessThan(free.body.usage.completion_tokens);

    // As a list among strings that never occur, and streamed: the stop string is never sent.
    const listed = await stream({ ...settings, stop: ['\u0000never\u0000', word] });
    expect(listed.text).toBe((free.body.text as string).slice(0, cut));
    expect(listed.done.finish_reason).toBe('stop');
  });

  it('some seeds end by themselves (end-of-turn token) before max_tokens', async () => {
    const results = [];
    for (const seed of [0, 1, 2, 3, 4, 5]) {
      const res = await infer({ prompt: 'Hello world', seed, max_tokens: 300 });
      expect(res.status).toBe(200);
      results.push(res.body);
    }
    const natural = results.filter((r) => r.finish_reason === 'stop');
    expect(natural.length).toBeGreaterThan(0);
    for (const r of natural) expect(r.usage.completion_tokens).toBeLessThan(300);
    for (const r of results.filter((r) => r.finish_reason === 'length')) expect(r.usage.completion_tokens).toBe(300);
  });

  it('chat messages are answered through the chat template', async () => {
    const chat = await infer({ messages: [{ role: 'user', content: 'Hello world' }], seed: 5, max_tokens: 40 });
    expect(chat.status, JSON.stringify(chat.body)).toBe(200);
    expect(['stop', 'length']).toContain(chat.body.finish_reason);
    const plain = await infer({ prompt: 'Hello world', seed: 5, max_tokens: 40 });
    // The ChatML wrapping adds tokens around the same text, and changes what follows.
    expect(chat.body.usage.prompt_tokens).toBeGreaterThan(plain.body.usage.prompt_tokens + 4);
    expect(chat.body.text).not.toBe(plain.body.text);
    // A system message and a previous turn count too.
    const longer = await infer({
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Hello world' },
        { role: 'assistant', content: 'Hi.' },
        { role: 'user', content: 'Again' },
      ],
      seed: 5,
      max_tokens: 40,
    });
    expect(longer.status).toBe(200);
    expect(longer.body.usage.prompt_tokens).toBeGreaterThan(chat.body.usage.prompt_tokens);
    // And the same seed gives the same chat answer.
    const again = await infer({ messages: [{ role: 'user', content: 'Hello world' }], seed: 5, max_tokens: 40 });
    expect(again.body.text).toBe(chat.body.text);
  });

  it('a prompt over limits.max_prompt_chars is 400 VALIDATION_ERROR naming body.prompt (or body.messages)', async () => {
    const limit = server.config.limits.max_prompt_chars;
    expect(limit).toBe(10_000);
    const over = await infer({ prompt: 'a'.repeat(limit + 1), max_tokens: 1 });
    expectApiError(over, 400, 'VALIDATION_ERROR');
    expect(detailPaths(over)).toContain('body.prompt');
    const overChat = await infer({ messages: [{ role: 'user', content: 'a'.repeat(limit / 2) }, { role: 'user', content: 'b'.repeat(limit / 2 + 1) }], max_tokens: 1 });
    expectApiError(overChat, 400, 'VALIDATION_ERROR');
    expect(detailPaths(overChat)).toContain('body.messages');
    // Streaming requests are checked before any event is sent.
    const overStream = await call(server.url, 'POST', '/api/v1/inference', { token, body: { model: MODEL, prompt: 'a'.repeat(limit + 1), stream: true } });
    expectApiError(overStream, 400, 'VALIDATION_ERROR');
  });

  it('a request never uses more than [engine] context_size tokens of context', async () => {
    const contextSize = server.config.engine.context_size;
    expect(contextSize).toBe(2048);
    // ~6,700 tokens of prompt: within the 10,000-character limit, over the 2,048-token context of a sequence.
    const tooLong = await infer({ prompt: 'hello '.repeat(1666), max_tokens: 4 });
    expectApiError(tooLong, 400, 'VALIDATION_ERROR');
    const tooLongStream = await infer({ prompt: 'hello '.repeat(1666), max_tokens: 4, stream: true });
    expectApiError(tooLongStream, 400, 'VALIDATION_ERROR');
    // A prompt that fits but leaves little room: generation ends where the context is full.
    const tight = await infer({ prompt: 'hello '.repeat(500), temperature: 0, max_tokens: 1000 });
    expect(tight.status, JSON.stringify(tight.body)).toBe(200);
    expect(tight.body.usage.prompt_tokens).toBeGreaterThan(1500);
    expect(tight.body.usage.prompt_tokens + tight.body.usage.completion_tokens, 'tokens held by one sequence').toBeLessThanOrEqual(contextSize);
    if (tight.body.usage.completion_tokens < 1000 - 10 && tight.body.usage.prompt_tokens + tight.body.usage.completion_tokens >= contextSize - 1) {
      expect(tight.body.finish_reason).toBe('length');
    }
  });

  it('exactly one of prompt and messages: both or neither is 400', async () => {
    expectApiError(await infer({ prompt: 'hi', messages: [{ role: 'user', content: 'hi' }] }), 400, 'VALIDATION_ERROR');
    expectApiError(await infer({}), 400, 'VALIDATION_ERROR');
    expectApiError(await infer({ messages: [] }), 400, 'VALIDATION_ERROR');
    expectApiError(await infer({ prompt: 'hi', max_tokens: 0 }), 400, 'VALIDATION_ERROR');
    expectApiError(await infer({ prompt: 'hi', temperature: 3 }), 400, 'VALIDATION_ERROR');
    expectApiError(await infer({ prompt: 'hi', unknown_field: 1 }), 400, 'VALIDATION_ERROR');
  });

  it("the spec's JSON Schema says the same: exactly one of prompt and messages", async () => {
    const spec = loadSpec();
    const validator = createValidator(spec);
    const schema = spec.document.components.schemas.InferenceRequest;
    const messages = [{ role: 'user', content: 'hi' }];
    expect(validator.valid(schema, { model: MODEL, prompt: 'hi' })).toBe(true);
    expect(validator.valid(schema, { model: MODEL, messages })).toBe(true);
    for (const body of [{ model: MODEL, prompt: 'hi', messages }, { model: MODEL }]) {
      expect(validator.valid(schema, body)).toBe(false);
      expectApiError(await infer(body), 400, 'VALIDATION_ERROR');
    }
  });

  it('an unknown model is 404 NOT_FOUND, sync and streamed', async () => {
    expectApiError(await infer({ model: 'no-such-model', prompt: 'hi' }), 404, 'NOT_FOUND');
    expectApiError(await infer({ model: 'no-such-model', prompt: 'hi', stream: true }), 404, 'NOT_FOUND');
    expectApiError(await post('/api/v1/embeddings', { model: 'no-such-model', input: 'hi' }), 404, 'NOT_FOUND');
  });

  it('path-like model ids are 400 and never reach the model catalog or the filesystem', async () => {
    const get = vi.spyOn(server.catalog, 'get');
    const pathOf = vi.spyOn(server.catalog, 'pathOf');
    try {
      for (const model of ['../etc/passwd', 'a/b', '..', '%2e%2e', '/etc/passwd', 'a\\b', '.hidden', '', 'demo-tiny.gguf/..', 'x'.repeat(129)]) {
        const res = await infer({ model, prompt: 'hi', max_tokens: 1 });
        expectApiError(res, 400, 'VALIDATION_ERROR');
        expect(detailPaths(res), model).toContain('body.model');
        expectApiError(await infer({ model, prompt: 'hi', max_tokens: 1, stream: true }), 400, 'VALIDATION_ERROR');
        expectApiError(await post('/api/v1/embeddings', { model, input: 'hi' }), 400, 'VALIDATION_ERROR');
      }
      expect(get).not.toHaveBeenCalled();
      expect(pathOf).not.toHaveBeenCalled();
    } finally {
      get.mockRestore();
      pathOf.mockRestore();
    }
  });

  it('streaming needs use_streaming: a guest may run inference but gets 403 for stream: true', async () => {
    const sync = await infer({ prompt: 'Hello', seed: 1, max_tokens: 8 }, guestToken);
    expect(sync.status).toBe(200);
    const streamed = await infer({ prompt: 'Hello', seed: 1, max_tokens: 8, stream: true }, guestToken);
    expectApiError(streamed, 403, 'PERMISSION_DENIED');
    expect(streamed.headers.get('content-type')).toMatch(/application\/json/);
  });

  it('a client that disconnects mid-stream frees its sequence', async () => {
    expect(server.config.engine.parallel).toBe(2);
    const long = { prompt: 'Hello world', temperature: 0, max_tokens: 2000 }; // greedy: runs to max_tokens (~seconds)
    const controllers = [new AbortController(), new AbortController()];
    const responses = await Promise.all(controllers.map((c) => streamRequest(long, c.signal)));
    for (const response of responses) expect(response.status).toBe(200);
    // Read until each stream has sent its first token, then hang up.
    await Promise.all(
      responses.map(async (response) => {
        for await (const event of readEvents(response)) if (event.event === 'token') break;
      }),
    );
    expect(server.engine.stats().find((s) => s.model === MODEL)).toMatchObject({ busy: 2 });
    for (const c of controllers) c.abort();

    // Both sequences come back long before 2,000 tokens could have been generated.
    await waitFor(() => (server.engine.stats().find((s) => s.model === MODEL)?.busy === 0 ? true : undefined), 5_000, 'the sequences to be released');
    const [a, b] = await Promise.all([infer({ prompt: 'Hi', seed: 1, max_tokens: 16 }), infer({ prompt: 'Ho', seed: 2, max_tokens: 16 })]);
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(server.engine.stats().find((s) => s.model === MODEL)).toMatchObject({ busy: 0, waiting: 0 });
  });

  it('a sync client that disconnects cancels its generation too', async () => {
    const controller = new AbortController();
    const pending = fetch(`${server.url}/api/v1/inference`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: 'Hello world', temperature: 0, max_tokens: 2000 }),
      signal: controller.signal,
    }).catch((error: unknown) => error);
    await waitFor(() => (server.engine.stats().find((s) => s.model === MODEL)?.busy === 1 ? true : undefined), 5_000, 'the generation to start');
    controller.abort();
    expect(await pending).toBeInstanceOf(Error);
    await waitFor(() => (server.engine.stats().find((s) => s.model === MODEL)?.busy === 0 ? true : undefined), 5_000, 'the sequence to be released');
  });

  it('embeddings: 128 dimensions on demo-tiny, deterministic, one per input in order', async () => {
    const one = await post('/api/v1/embeddings', { model: MODEL, input: 'alpha' });
    expect(one.status, JSON.stringify(one.body)).toBe(200);
    expect(one.body).toMatchObject({ object: 'list', model: MODEL });
    expect(one.body.data).toHaveLength(1);
    expect(one.body.data[0].index).toBe(0);
    expect(one.body.data[0].embedding).toHaveLength(128);
    expect(one.body.data[0].embedding.every((x: unknown) => typeof x === 'number' && Number.isFinite(x))).toBe(true);
    expect(one.body.usage.prompt_tokens).toBeGreaterThan(0);
    expect(one.body.usage.total_tokens).toBe(one.body.usage.prompt_tokens);

    const again = await post('/api/v1/embeddings', { model: MODEL, input: 'alpha' });
    expect(again.body.data[0].embedding).toEqual(one.body.data[0].embedding);

    const beta = await post('/api/v1/embeddings', { model: MODEL, input: 'beta gamma' });
    const list = await post('/api/v1/embeddings', { model: MODEL, input: ['beta gamma', 'alpha', 'beta gamma'] });
    expect(list.status).toBe(200);
    expect(list.body.data.map((d: { index: number }) => d.index)).toEqual([0, 1, 2]);
    expect(list.body.data[0].embedding).toEqual(beta.body.data[0].embedding);
    expect(list.body.data[1].embedding).toEqual(one.body.data[0].embedding);
    expect(list.body.data[2].embedding).toEqual(beta.body.data[0].embedding);
    expect(list.body.data[0].embedding).not.toEqual(list.body.data[1].embedding);
    expect(list.body.usage.prompt_tokens).toBe(2 * beta.body.usage.prompt_tokens + one.body.usage.prompt_tokens);

    expectApiError(await post('/api/v1/embeddings', { model: MODEL, input: [] }), 400, 'VALIDATION_ERROR');
    expectApiError(await post('/api/v1/embeddings', { model: MODEL, input: 'a'.repeat(10_001) }), 400, 'VALIDATION_ERROR');
  });
});

// ---- a second server: one sequence, a queue of one ------------------------------------------------

describe('inference queue limits', () => {
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 100_000, 'engine.parallel': 1, 'engine.max_queue': 1 } });
    await waitForReady(server.url);
    token = await login(server.url);
  });
  afterAll(() => server?.close());

  const longRequest = (signal: AbortSignal, extra: Record<string, unknown> = {}) =>
    fetch(`${server.url}/api/v1/inference`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: 'Hello world', temperature: 0, max_tokens: 2000, ...extra }),
      signal,
    }).then(
      async (res) => ({ status: res.status, headers: res.headers, body: res.headers.get('content-type')?.includes('json') ? await res.json() : undefined }),
      (error: unknown) => ({ status: 0, headers: new Headers(), body: error }),
    );

  it('with every sequence busy and the queue full, a request is 503 SERVICE_UNAVAILABLE with Retry-After', async () => {
    const controllers = [0, 1, 2].map(() => new AbortController());
    const pending = controllers.map((c, i) => longRequest(c.signal).then((r) => ({ ...r, i })));
    try {
      // The two that got a sequence or a queue slot run for seconds; the third is refused at once.
      const first = await Promise.race(pending);
      expectApiError(first, 503, 'SERVICE_UNAVAILABLE');
      const retryAfter = first.headers.get('retry-after');
      expect(retryAfter).toMatch(/^\d+$/);
      expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
      expect(server.engine.stats().find((s) => s.model === MODEL)).toMatchObject({ busy: 1, waiting: 1, sequences: 1 });

      // A streaming request is refused the same way, before any event is sent.
      const refusedStream = await call(server.url, 'POST', '/api/v1/inference', { token, body: { model: MODEL, prompt: 'x', stream: true } });
      expectApiError(refusedStream, 503, 'SERVICE_UNAVAILABLE');
      expect(refusedStream.headers.get('retry-after')).toMatch(/^\d+$/);
    } finally {
      // Hanging up frees the sequence and the queue slot.
      controllers.forEach((c) => c.abort());
    }
    const rest = await Promise.all(pending);
    expect(rest.filter((r) => r.status === 503)).toHaveLength(1);
    await waitFor(() => {
      const s = server.engine.stats().find((m) => m.model === MODEL);
      return s?.busy === 0 && s.waiting === 0 ? true : undefined;
    }, 5_000, 'the sequence and queue to be freed');
  });

  it('a stream ready at once sends its status and headers in the same write as its first event; one that waits opens at once', async () => {
    const stats = () => server.engine.stats().find((m) => m.model === MODEL);
    await waitFor(() => (!stats() || (stats()!.busy === 0 && stats()!.waiting === 0) ? true : undefined), 5_000, 'an idle engine');
    // Ready at once: the first bytes on the wire are the status line, the headers and an event.
    const body = JSON.stringify({ model: MODEL, prompt: 'Hello world', temperature: 0, max_tokens: 4, stream: true });
    const firstChunk = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(server.port, '127.0.0.1', () => {
        socket.write(`POST /api/v1/inference HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      });
      socket.once('data', (chunk) => {
        resolve(String(chunk));
        socket.destroy();
      });
      socket.once('error', reject);
    });
    expect(firstChunk).toMatch(/^HTTP\/1\.1 200 /);
    expect(firstChunk).toMatch(/\r\ncontent-type: text\/event-stream/i);
    expect(firstChunk).toMatch(/\r\n\r\n[\s\S]*event: (token|done)\n/);

    // Waiting for the busy sequence: the 200 and the headers come at once, before any event.
    await waitFor(() => (stats()?.busy === 0 && stats()?.waiting === 0 ? true : undefined), 5_000, 'the first stream to end');
    const running = new AbortController();
    const waiting = new AbortController();
    const first = longRequest(running.signal);
    try {
      await waitFor(() => (stats()?.busy === 1 ? true : undefined), 5_000, 'the long request to run');
      const stream = await fetch(`${server.url}/api/v1/inference`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: MODEL, prompt: 'x', max_tokens: 2, stream: true }),
        signal: waiting.signal,
      });
      expect(stream.status).toBe(200);
      expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
      // The headers arrived while the request still waited in the queue for the sequence.
      expect(stats()).toMatchObject({ busy: 1, waiting: 1 });
    } finally {
      waiting.abort();
      running.abort();
    }
    await first;
    await waitFor(() => (stats()?.busy === 0 && stats()?.waiting === 0 ? true : undefined), 5_000, 'the sequence and queue to be freed');
  });

  it('a queued client that hangs up leaves the queue; the running one frees its sequence', async () => {
    const stats = () => server.engine.stats().find((m) => m.model === MODEL);
    const running = new AbortController();
    const queued = new AbortController();
    // Whatever an earlier test left running has gone away first.
    await waitFor(() => (!stats() || (stats()!.busy === 0 && stats()!.waiting === 0) ? true : undefined), 5_000, 'an idle engine');
    const first = longRequest(running.signal);
    try {
      await waitFor(() => (stats()?.busy === 1 ? true : undefined), 5_000, 'the first request to run');
      const second = longRequest(queued.signal, { stream: true });
      await waitFor(() => (stats()?.waiting === 1 ? true : undefined), 5_000, 'the second request to queue');
      queued.abort();
      await second;
      await waitFor(() => (stats()?.waiting === 0 ? true : undefined), 5_000, 'the queued request to leave');
      expect(stats()).toMatchObject({ busy: 1 });
    } finally {
      running.abort();
      queued.abort();
    }
    await first;
    await waitFor(() => (stats()?.busy === 0 ? true : undefined), 5_000, 'the sequence to be freed');
    const after = await call(server.url, 'POST', '/api/v1/inference', { token, body: { model: MODEL, prompt: 'Hi', seed: 1, max_tokens: 8 } });
    expect(after.status).toBe(200);
    expect(stats()).toMatchObject({ busy: 0, waiting: 0 });
  });
});
