// The SDK in a real browser (headless Chromium): bundled for the browser as an application would
// bundle it, served from another origin than the API, so CORS and the exposed headers are real.
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForReady } from './helpers/api-checks.js';
import { call, login, startTestServer, type TestServer } from './helpers/server.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const root = path.resolve(import.meta.dirname, '..');

// What the page does, with the SDK as an application would use it.
const PAGE_SCRIPT = `
import { InfernoClient, PermissionDeniedError } from '/sdk.js';
const params = new URL(location.href).searchParams;
const baseUrl = params.get('api');
const results = {};
try {
  const admin = new InfernoClient({ baseUrl, credentials: { username: 'admin', password: params.get('password') } });
  results.user = (await admin.auth.me()).user.username;
  results.models = (await admin.models.list()).data.map((m) => m.id);
  const rl = admin.rateLimit;
  results.rateLimit = rl && { limit: rl.limit, remaining: rl.remaining, reset: rl.reset.toISOString() };
  let text = '';
  for await (const event of admin.inference.stream({ model: 'demo-tiny', prompt: 'Hello', max_tokens: 8, seed: 1 })) {
    if (event.event === 'token') text += event.data.text;
    else results.finish = event.data.finish_reason;
  }
  results.streamed = text;
  const key = await admin.apiKeys.create({ name: 'browser', permissions: ['read_models'] });
  const app = new InfernoClient({ baseUrl, apiKey: key.key });
  try {
    await app.users.list();
  } catch (error) {
    results.error = { name: error.name, typed: error instanceof PermissionDeniedError, status: error.status, code: error.code, requestId: error.requestId };
  }
} catch (error) {
  results.failure = String((error && error.stack) || error);
}
window.__results = results;
`;

// CI installs Chromium (.ci/run) and fails if this suite is skipped; elsewhere it runs where Chromium is.
describe.skipIf(!existsSync(CHROMIUM))('the SDK in a real browser', () => {
  let page: http.Server;
  let origin: string;
  let server: TestServer;
  let browser: Browser;

  beforeAll(async () => {
    const bundle = await build({
      entryPoints: [path.join(root, 'sdk/src/index.ts')],
      bundle: true,
      format: 'esm',
      platform: 'browser', // fails the build if anything reaches for a Node built-in
      write: false,
    });
    const sdk = bundle.outputFiles[0]!.text;
    page = http.createServer((req, res) => {
      if (req.url === '/sdk.js') res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(sdk);
      else if (req.url === '/app.js') res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(PAGE_SCRIPT);
      else res.writeHead(200, { 'Content-Type': 'text/html' }).end('<!doctype html><title>Inferno SDK</title><script type="module" src="/app.js"></script>');
    });
    await new Promise<void>((resolve) => page.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(page.address() as AddressInfo).port}`;
    server = await startTestServer({ settings: { 'server.cors_origins': origin, 'rate_limit.requests_per_minute': 500 } });
    await waitForReady(server.url);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await new Promise((resolve) => page?.close(resolve));
  });

  it('logs in, lists models, reads the rate-limit headers, streams tokens and throws typed errors, across origins', async () => {
    const tab = await browser.newPage();
    const url = `${origin}/?api=${encodeURIComponent(server.url)}&password=${encodeURIComponent(server.adminPassword)}`;
    await tab.goto(url);
    await tab.waitForFunction(() => (window as unknown as { __results?: unknown }).__results !== undefined, undefined, { timeout: 30_000 });
    const results = (await tab.evaluate(() => (window as unknown as { __results: unknown }).__results)) as Record<string, any>;
    expect(results.failure).toBeUndefined();
    expect(results.user).toBe('admin');
    expect(results.models).toContain('demo-tiny');
    // Readable only because the server exposes the headers to this origin.
    expect(results.rateLimit.limit).toBe(500);
    expect(results.rateLimit.remaining).toBeGreaterThan(0);
    expect(Date.parse(results.rateLimit.reset)).toBeGreaterThan(Date.now() - 1000);
    // The same seed over plain HTTP from Node gives the same text.
    const direct = await call(server.url, 'POST', '/api/v1/inference', {
      token: await login(server.url),
      body: { model: 'demo-tiny', prompt: 'Hello', max_tokens: 8, seed: 1 },
    });
    expect(results.streamed).toBe(direct.body.text);
    expect(['stop', 'length']).toContain(results.finish);
    expect(results.error).toEqual({ name: 'PermissionDeniedError', typed: true, status: 403, code: 'PERMISSION_DENIED', requestId: expect.any(String) });
    await tab.close();
  });
});
