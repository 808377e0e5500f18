import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { SseParser, type RawServerSentEvent } from '../src/core/sse.js';
import { Transport } from '../src/core/transport.js';
import { AuthenticationError, ConnectionError, type ServerSentEvent, TimeoutError } from '../src/index.js';
import { apiError, type LocalServer, sendJson, startLocalServer } from './helpers/http.js';

describe('SseParser', () => {
  const parse = (...chunks: string[]) => {
    const parser = new SseParser();
    const events: RawServerSentEvent[] = chunks.flatMap((chunk) => parser.push(chunk));
    return [...events, ...parser.end()];
  };

  it('parses named and default events and skips comments', () => {
    expect(parse(': heartbeat\n\nevent: token\ndata: {"t":1}\n\ndata: plain\n\n')).toEqual([
      { event: 'token', data: '{"t":1}' },
      { event: 'message', data: 'plain' },
    ]);
  });

  it('accepts LF, CRLF and CR line ends, even split across chunks', () => {
    expect(parse('data: a\r', '\n\r', '\ndata: b\r\rdata: c\n', '\n')).toEqual([
      { event: 'message', data: 'a' },
      { event: 'message', data: 'b' },
      { event: 'message', data: 'c' },
    ]);
  });

  it('joins multi-line data, keeps ids, and reads fields without a space or a colon', () => {
    expect(parse('id: 7\nevent:x\ndata:line1\ndata: line2\ndata\n\n')).toEqual([
      { event: 'x', data: 'line1\nline2\n', id: '7' },
    ]);
  });

  it('does not dispatch an event without data, nor one cut off by the end of the stream', () => {
    expect(parse('event: ping\n\n', 'data: never finished')).toEqual([]);
  });

  it('survives a chunk per character', () => {
    const text = 'event: token\r\ndata: {"text":"héllo"}\r\n\r\n';
    expect(parse(...text.split(''))).toEqual([{ event: 'token', data: '{"text":"héllo"}' }]);
  });
});

describe('Transport.stream', () => {
  let server: LocalServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  function openStream(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-request-id': 'req-sse' });
    res.flushHeaders();
  }

  const event = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;

  function transport(options: Partial<ConstructorParameters<typeof Transport>[0]> = {}) {
    return new Transport({ baseUrl: server!.url, apiKey: 'inf_k', retry: { baseDelay: 20, jitter: 0 }, ...options });
  }

  // A generated operation stands in for the inference routes that will use streaming.
  const getEvents = (t: Transport, options?: Parameters<Transport['stream']>[2]) =>
    t.stream<{ text?: string; n?: number }>(
      'streamEvents',
      (o) => o.client.get({ url: '/events', security: [{ name: 'X-API-Key', type: 'apiKey' }], ...o }),
      options,
    );

  // createInference takes an Idempotency-Key, which makes its POST safe to repeat.
  const postEvents = (t: Transport, operationId = 'createInference') =>
    t.stream<{ text?: string }>(operationId, (o) => o.client.post({ url: '/events', body: { prompt: 'hi' }, ...o }));

  async function collect<T>(events: AsyncIterable<T>): Promise<T[]> {
    const out: T[] = [];
    for await (const e of events) out.push(e);
    return out;
  }

  it('yields {event, data} with data parsed as JSON, ignoring heartbeats, and sends the credentials', async () => {
    server = await startLocalServer(async (_req, res) => {
      openStream(res);
      res.write(': keep-alive\n\n');
      const text = event('token', { text: 'Hel' });
      for (const char of text) res.write(char); // the worst fragmentation
      res.write('data: {"text":"lo"}\r\n\r\n');
      res.write('event: done\ndata: [DONE]\n\n');
      res.end();
    });
    const events = await collect(getEvents(transport()));
    expect(events).toEqual<ServerSentEvent[]>([
      { event: 'token', data: { text: 'Hel' } },
      { event: 'message', data: { text: 'lo' } },
      { event: 'done', data: '[DONE]' },
    ]);
    expect(server.requests[0]!.headers.accept).toBe('text/event-stream');
    expect(server.requests[0]!.headers['x-api-key']).toBe('inf_k');
  });

  it('sends nothing until iteration starts', async () => {
    server = await startLocalServer((_req, res) => {
      openStream(res);
      res.end(event('token', { n: 1 }));
    });
    const events = getEvents(transport());
    await new Promise((r) => setTimeout(r, 50));
    expect(server.requests).toHaveLength(0);
    expect(await collect(events)).toHaveLength(1);
  });

  /** A server that sends an event every 20 ms until the client goes away, and records when it does. */
  async function endlessServer() {
    const closed: number[] = [];
    server = await startLocalServer((_req, res) => {
      openStream(res);
      let n = 0;
      const timer = setInterval(() => res.write(event('token', { n: n++ })), 20);
      res.on('close', () => {
        clearInterval(timer);
        closed.push(performance.now());
      });
    });
    return closed;
  }

  it('aborts the HTTP request when the loop breaks', async () => {
    const closed = await endlessServer();
    const seen: number[] = [];
    for await (const e of getEvents(transport())) {
      seen.push(e.data.n!);
      if (seen.length === 3) break;
    }
    expect(seen).toEqual([0, 1, 2]);
    await expect.poll(() => closed.length, { timeout: 1_000 }).toBe(1);
  });

  it('aborts the HTTP request when the signal aborts, throwing the abort reason', async () => {
    const closed = await endlessServer();
    const controller = new AbortController();
    const seen: number[] = [];
    const error = await (async () => {
      for await (const e of getEvents(transport(), { signal: controller.signal })) {
        seen.push(e.data.n!);
        if (seen.length === 2) controller.abort();
      }
    })().catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'AbortError' });
    expect(seen).toEqual([0, 1]);
    await expect.poll(() => closed.length, { timeout: 1_000 }).toBe(1);
  });

  it('ends a stalled stream with TimeoutError after the idle timeout, and closes the request', async () => {
    const closed: number[] = [];
    server = await startLocalServer((_req, res) => {
      openStream(res);
      res.write(event('token', { n: 0 }));
      res.on('close', () => closed.push(performance.now())); // then silence
    });
    const seen: unknown[] = [];
    const started = performance.now();
    const error = await (async () => {
      for await (const e of getEvents(transport(), { streamIdleTimeout: 200 })) seen.push(e.data);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([{ n: 0 }]);
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as TimeoutError).timeout).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    await expect.poll(() => closed.length, { timeout: 1_000 }).toBe(1);
    expect(server.requests).toHaveLength(1); // after the first event: never retried
  });

  it('counts heartbeats as activity for the idle timeout', async () => {
    server = await startLocalServer((_req, res) => {
      openStream(res);
      let beats = 0;
      const timer = setInterval(() => {
        if (++beats < 6) return void res.write(': heartbeat\n\n');
        clearInterval(timer);
        res.end(event('token', { n: 1 }));
      }, 60);
    });
    await expect(collect(getEvents(transport(), { streamIdleTimeout: 150 }))).resolves.toEqual([
      { event: 'token', data: { n: 1 } },
    ]);
  });

  it('counts heartbeats between events as activity too', async () => {
    server = await startLocalServer((_req, res) => {
      openStream(res);
      res.write(event('token', { n: 1 }));
      let beats = 0;
      const timer = setInterval(() => {
        if (++beats < 6) return void res.write(': keep-alive\n\n');
        clearInterval(timer);
        res.end(event('token', { n: 2 }));
      }, 60);
    });
    await expect(collect(getEvents(transport(), { streamIdleTimeout: 150 }))).resolves.toEqual([
      { event: 'token', data: { n: 1 } },
      { event: 'token', data: { n: 2 } },
    ]);
  });

  it.each([0, Infinity])('turns the idle timeout off with streamIdleTimeout: %s', async (streamIdleTimeout) => {
    server = await startLocalServer((_req, res) => {
      openStream(res);
      setTimeout(() => res.write(event('token', { n: 1 })), 100);
      setTimeout(() => res.end(event('token', { n: 2 })), 200);
    });
    await expect(collect(getEvents(transport(), { streamIdleTimeout }))).resolves.toEqual([
      { event: 'token', data: { n: 1 } },
      { event: 'token', data: { n: 2 } },
    ]);
  });

  it('retries a stream that drops before its first event', async () => {
    server = await startLocalServer((req, res, i) => {
      openStream(res);
      if (i === 0) return void setTimeout(() => req.socket.destroy(), 20);
      res.end(event('token', { text: 'ok' }));
    });
    await expect(collect(getEvents(transport()))).resolves.toEqual([{ event: 'token', data: { text: 'ok' } }]);
    expect(server.requests).toHaveLength(2);
  });

  it('does not send a POST stream without a key again once its response arrived, even if it breaks before its first event', async () => {
    server = await startLocalServer((req, res, i) => {
      openStream(res);
      if (i === 0) return void setTimeout(() => req.socket.destroy(), 20);
      res.end(event('token', { text: 'ok' }));
    });
    const error = await collect(postEvents(transport(), 'streamEvents')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toMatch(/broke off before its first event/);
    expect(server.requests).toHaveLength(1); // the server had the request: it may be generating
  });

  it('retries a POST stream with an Idempotency-Key whose connection fails before any response, with the same key', async () => {
    server = await startLocalServer((req, res, i) => {
      if (i === 0) return void req.socket.destroy();
      openStream(res);
      res.end(event('token', { text: 'ok' }));
    });
    await expect(collect(postEvents(transport()))).resolves.toHaveLength(1);
    expect(server.requests.map((r) => [r.method, r.body])).toEqual([
      ['POST', '{"prompt":"hi"}'],
      ['POST', '{"prompt":"hi"}'],
    ]);
    const keys = server.requests.map((r) => r.headers['idempotency-key']);
    expect(keys[0]).toBeTruthy();
    expect(keys[1]).toBe(keys[0]);
  });

  it('does not retry a POST stream without a key whose connection closed after sending', async () => {
    server = await startLocalServer((req) => void req.socket.destroy());
    await expect(collect(postEvents(transport(), 'streamEvents'))).rejects.toBeInstanceOf(ConnectionError);
    expect(server.requests).toHaveLength(1);
  });

  it('exposes the response headers and request id of a stream, and keeps it on a drop', async () => {
    server = await startLocalServer((req, res) => {
      openStream(res);
      res.write(event('token', { text: 'partial' }));
      setTimeout(() => req.socket.destroy(), 30);
    });
    const stream = getEvents(transport());
    expect(stream.requestId).toBeUndefined();
    const { data, requestId, headers, status } = await stream.withResponse();
    expect(data).toBe(stream);
    expect([status, requestId, headers.get('content-type')]).toEqual([200, 'req-sse', 'text/event-stream']);
    expect(stream.requestId).toBe('req-sse');
    const error = await collect(stream).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).requestId).toBe('req-sse');
    await expect(collect(stream)).rejects.toBeInstanceOf(TypeError);
  });

  it('does not retry once an event was delivered: the drop is a ConnectionError', async () => {
    server = await startLocalServer((req, res) => {
      openStream(res);
      res.write(event('token', { text: 'partial' }));
      setTimeout(() => req.socket.destroy(), 30);
    });
    const seen: unknown[] = [];
    const error = await (async () => {
      for await (const e of getEvents(transport())) seen.push(e.data);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([{ text: 'partial' }]);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(server.requests).toHaveLength(1);
  });

  it('retries an error status before the stream, and throws typed errors', async () => {
    server = await startLocalServer((_req, res, i) => {
      if (i === 0) return sendJson(res, 503, apiError('SERVICE_UNAVAILABLE', 'loading'));
      if (i === 1) {
        openStream(res);
        return void res.end(event('token', { n: 1 }));
      }
      sendJson(res, 401, apiError('AUTHENTICATION_FAILED', 'bad key'));
    });
    const t = transport();
    await expect(collect(getEvents(t))).resolves.toHaveLength(1);
    expect(server.requests).toHaveLength(2);
    const error = await collect(getEvents(t)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as AuthenticationError).message).toBe('bad key');
  });
});
