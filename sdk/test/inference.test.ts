import { afterEach, describe, expect, it } from 'vitest';
import { ConnectionError, InfernoClient, type InferenceStreamEvent, ServiceUnavailableError } from '../src/index.js';
import { type LocalServer, startLocalServer } from './helpers/http.js';

let server: LocalServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const done = {
  id: 'inf-1',
  model: 'demo-tiny',
  finish_reason: 'stop',
  usage: { prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 },
  timings: { queued_ms: 0, prompt_ms: 1, generation_ms: 2, total_ms: 3, tokens_per_second: 1000 },
};

describe('client.inference.stream', () => {
  it('posts stream: true and yields typed token and done events', async () => {
    server = await startLocalServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': keep-alive\n\n');
      res.write('event: token\ndata: {"text":"Hel"}\n\n');
      res.write('event: token\ndata: {"text":"lo"}\n\n');
      res.end(`event: done\ndata: ${JSON.stringify(done)}\n\n`);
    });
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k' });
    const events: InferenceStreamEvent[] = [];
    let text = '';
    for await (const event of client.inference.stream({ model: 'demo-tiny', prompt: 'Hi' })) {
      events.push(event);
      if (event.event === 'token') text += event.data.text;
    }
    expect(text).toBe('Hello');
    expect(events.map((e) => e.event)).toEqual(['token', 'token', 'done']);
    expect(events.at(-1)!.data).toEqual(done);
    expect(JSON.parse(server.requests[0]!.body)).toEqual({ model: 'demo-tiny', prompt: 'Hi', stream: true });
  });

  it('throws the error the server reports midway as its typed error', async () => {
    server = await startLocalServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': 'req-midway' });
      res.write('event: token\ndata: {"text":"Hel"}\n\n');
      res.end('event: error\ndata: {"error":{"code":"SERVICE_UNAVAILABLE","message":"model unloaded","details":null}}\n\n');
    });
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k' });
    const seen: string[] = [];
    const error = await (async () => {
      for await (const event of client.inference.stream({ model: 'demo-tiny', prompt: 'Hi' })) seen.push(event.event);
    })().catch((e: unknown) => e);
    expect(seen).toEqual(['token']);
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(error).toMatchObject({ status: 503, code: 'SERVICE_UNAVAILABLE', message: 'model unloaded', requestId: 'req-midway' });
    expect(server.requests).toHaveLength(1);
  });

  it('throws ConnectionError when the stream ends cleanly before its done event, without sending it again', async () => {
    server = await startLocalServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event: token\ndata: {"text":"Hel"}\n\n');
      res.end(': keep-alive\n\n'); // e.g. a proxy closing the response: a clean end, but no done
    });
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k' });
    const seen: string[] = [];
    const error = await (async () => {
      for await (const event of client.inference.stream({ model: 'demo-tiny', prompt: 'Hi' })) seen.push(event.event);
    })().catch((e: unknown) => e);
    expect(seen).toEqual(['token']);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toMatch(/ended before its done event/);
    expect(server.requests).toHaveLength(1);
  });

  it('throws ConnectionError for an empty stream', async () => {
    server = await startLocalServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end();
    });
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k' });
    const error = await (async () => {
      for await (const _ of client.inference.stream({ model: 'demo-tiny', prompt: 'Hi' })) void _;
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
  });
});
