// SIGTERM with open streams, on the server as its own process (as `npm start` runs it).
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { killGroup, spawnServer, tempRoot, type ChildServer } from '../../test/helpers/child-server.js';
import { waitForReady } from '../../test/helpers/api-checks.js';
import { call, login } from '../../test/helpers/server.js';

/** Opens a streamed request and reads it to its end; `firstEvent` resolves at the first generated text. */
function openStream(url: string, route: string, token: string, body: unknown) {
  let markFirst = () => {};
  const firstEvent = new Promise<void>((resolve) => (markFirst = resolve));
  const text = (async () => {
    const response = await fetch(url + route, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    expect(response.status).toBe(200);
    const decoder = new TextDecoder();
    let all = '';
    const reader = response.body!.getReader();
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      all += decoder.decode(read.value, { stream: true });
      if (/event: token|"content":"[^"]/.test(all)) markFirst();
    }
    return all;
  })();
  return { firstEvent, text };
}

describe('graceful shutdown (SIGTERM)', () => {
  const dir = tempRoot();
  let server: ChildServer | undefined;
  afterAll(() => {
    // The whole group: SIGKILL on tsx alone would leave the server itself running.
    if (server) killGroup(server, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('lets short generations finish, ends long ones with an error event in their own format, answers 503 meanwhile, exits 0', async () => {
    server = await spawnServer(dir, {
      group: true,
      // The variables the README and the examples set for clients do not stop the server.
      env: { INFERNO_API_KEY: 'inf_x', INFERNO_URL: 'http://127.0.0.1:8080', INFERNO_PASSWORD: 'x', INFERNO_USER: 'admin' },
      args: ['--set', 'server.shutdown_grace_seconds=3', '--set', 'engine.context_size=32768', '--set', 'rate_limit.requests_per_minute=10000'],
    });
    const { url } = server;
    await waitForReady(url, 60_000);
    const token = await login(url);
    const long = { model: 'demo-tiny', prompt: 'Hello world', temperature: 0, max_tokens: 30_000, stream: true };
    const native = openStream(url, '/api/v1/inference', token, long);
    const openai = openStream(url, '/v1/chat/completions', token, { model: 'demo-tiny', messages: [{ role: 'user', content: 'Hi' }], temperature: 0, max_tokens: 30_000, stream: true });
    await Promise.all([native.firstEvent, openai.firstEvent]);
    const short = openStream(url, '/api/v1/inference', token, { model: 'demo-tiny', prompt: 'Hi', max_tokens: 16, stream: true });
    await short.firstEvent;

    const signalled = performance.now();
    server.process.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    const during = await call(url, 'GET', '/api/v1/models', { token });
    expect(during.status).toBe(503);
    expect(during.body.error.code).toBe('SERVICE_UNAVAILABLE');
    expect(Number(during.headers.get('retry-after'))).toBeGreaterThan(0);

    // The short one ran to its end.
    expect(await short.text).toMatch(/event: done\ndata: .*\n\n$/);
    // The long native stream ends with an error event in the documented error shape.
    const nativeText = await native.text;
    const nativeLast = /event: error\ndata: (.*)\n\n$/.exec(nativeText);
    expect(nativeLast, nativeText.slice(-300)).not.toBeNull();
    const nativeError = JSON.parse(nativeLast![1]!);
    expect(Object.keys(nativeError)).toEqual(['error']);
    expect(nativeError.error.code).toBe('SERVICE_UNAVAILABLE');
    expect(nativeError.error.message).toMatch(/shutting down/);
    // The /v1 stream ends with an OpenAI error chunk, then [DONE].
    const openaiText = await openai.text;
    const openaiLast = /data: (\{"error".*)\n\ndata: \[DONE\]\n\n$/.exec(openaiText);
    expect(openaiLast, openaiText.slice(-300)).not.toBeNull();
    expect(JSON.parse(openaiLast![1]!).error.message).toMatch(/shutting down/);
    // Not cut before the grace period (3 s) was over.
    expect(performance.now() - signalled).toBeGreaterThan(2500);

    expect(await server.exited).toBe(0);
    expect(server.output()).toContain('draining');
  }, 120_000);
});
