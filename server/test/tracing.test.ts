/**
 * OpenTelemetry tracing, exported over OTLP/HTTP (JSON) to a receiver of the test's own: one
 * inference request yields the expected span tree (request → authenticate → store calls, rate
 * limit, inference → queue wait, prompt evaluation, generation) carrying its request id, and no
 * attribute holds a credential or prompt text. Off by default, when the SDK is never loaded.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from '../src/config.js';
import { createLogger } from '../src/logging/logger.js';
import { NO_TRACING } from '../src/observability/tracing.js';
import { startTracing } from '../src/observability/tracing-setup.js';
import { eventually, waitForReady } from '../../test/helpers/api-checks.js';
import { createApiKey } from '../../test/helpers/security.js';
import { call, JWT_SECRET, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

const PROMPT = 'A secret-free prompt about lighthouses';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: { key: string; value: Record<string, unknown> }[];
}

const attr = (span: OtlpSpan, key: string) => {
  const value = span.attributes.find((a) => a.key === key)?.value;
  return value && (value.stringValue ?? value.intValue ?? value.boolValue ?? value.doubleValue);
};

describe('tracing over OTLP/HTTP', () => {
  let receiver: http.Server;
  const bodies: string[] = [];
  const paths: string[] = [];
  let server: TestServer;
  let apiKey: string;
  let token: string;

  const spans = (): OtlpSpan[] =>
    bodies.flatMap((body) => (JSON.parse(body).resourceSpans as any[]).flatMap((rs) => (rs.scopeSpans as any[]).flatMap((ss) => ss.spans as OtlpSpan[])));

  beforeAll(async () => {
    receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        paths.push(`${req.method} ${req.url} ${req.headers['content-type']}`);
        bodies.push(Buffer.concat(chunks).toString('utf8'));
        res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const { port } = receiver.address() as AddressInfo;
    server = await startTestServer({ settings: { 'tracing.otlp_endpoint': `http://127.0.0.1:${port}`, 'tracing.service_name': 'inferno-test' } });
    await waitForReady(server.url);
    token = await login(server.url);
    apiKey = (await createApiKey(server.url, { token }, { name: 'traced', permissions: ['run_inference'] })).key;
  });
  afterAll(async () => {
    await server?.close();
    await new Promise((resolve) => receiver?.close(resolve));
  });

  it('one inference request is one trace with the expected span tree', async () => {
    const res = await call(server.url, 'POST', '/api/v1/inference', { apiKey, body: { model: 'demo-tiny', prompt: PROMPT, max_tokens: 8 } });
    expect(res.status).toBe(200);
    const requestId = res.headers.get('x-request-id')!;

    const root = await eventually(() => {
      const found = spans().find((s) => attr(s, 'inferno.request_id') === requestId && !s.parentSpanId);
      expect(found).toBeDefined();
      return found!;
    }, 15_000);
    expect(paths[0]).toMatch(/^POST \/v1\/traces application\/json/);
    const resource = JSON.parse(bodies[0]!).resourceSpans[0].resource.attributes as OtlpSpan['attributes'];
    expect(resource.find((a) => a.key === 'service.name')?.value.stringValue).toBe('inferno-test');

    const trace = spans().filter((s) => s.traceId === root.traceId);
    const childrenOf = (span: OtlpSpan) => trace.filter((s) => s.parentSpanId === span.spanId);
    const child = (span: OtlpSpan, name: string) => {
      const found = childrenOf(span).find((s) => s.name === name);
      expect(found, `${name} under ${span.name}: ${childrenOf(span).map((s) => s.name).join(', ')}`).toBeDefined();
      return found!;
    };

    expect(root.name).toBe('POST /api/v1/inference');
    expect(root.kind).toBe(2); // SERVER
    expect(attr(root, 'http.route')).toBe('/api/v1/inference');
    expect(Number(attr(root, 'http.response.status_code'))).toBe(200);
    expect(attr(root, 'inferno.auth.method')).toBe('api_key');

    const authenticate = child(root, 'authenticate');
    expect(childrenOf(authenticate).map((s) => s.name)).toEqual(expect.arrayContaining(['store.findApiKeyByHash', 'store.getUser']));
    child(root, 'rate_limit');
    const inference = child(root, 'inference');
    expect(attr(inference, 'gen_ai.request.model')).toBe('demo-tiny');
    expect(Number(attr(inference, 'gen_ai.usage.input_tokens'))).toBe(res.body.usage.prompt_tokens);
    expect(Number(attr(inference, 'gen_ai.usage.output_tokens'))).toBe(res.body.usage.completion_tokens);
    const phases = ['queue_wait', 'prompt_evaluation', 'generation'].map((name) => child(inference, name));
    // Laid end to end inside the inference span, inside the request.
    const t = (s: OtlpSpan, edge: 'startTimeUnixNano' | 'endTimeUnixNano') => BigInt(s[edge]);
    expect(t(inference, 'startTimeUnixNano') >= t(root, 'startTimeUnixNano')).toBe(true);
    expect(t(inference, 'endTimeUnixNano') <= t(root, 'endTimeUnixNano')).toBe(true);
    for (let i = 1; i < phases.length; i++) expect(t(phases[i]!, 'startTimeUnixNano') >= t(phases[i - 1]!, 'startTimeUnixNano')).toBe(true);
    expect(trace.every((s) => s.traceId === root.traceId)).toBe(true);
  });

  it("continues a caller's trace from its traceparent header", async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parentId = '00f067aa0ba902b7';
    const res = await call(server.url, 'GET', '/api/v1/models', { apiKey, headers: { traceparent: `00-${traceId}-${parentId}-01` } });
    const requestId = res.headers.get('x-request-id')!;
    const root = await eventually(() => {
      const found = spans().find((s) => attr(s, 'inferno.request_id') === requestId);
      expect(found).toBeDefined();
      return found!;
    }, 15_000);
    expect(root.traceId).toBe(traceId);
    expect(root.parentSpanId).toBe(parentId);
    // A malformed one starts a trace of its own.
    const other = await call(server.url, 'GET', '/api/v1/models', { apiKey, headers: { traceparent: 'not-a-traceparent' } });
    const own = await eventually(() => {
      const found = spans().find((s) => attr(s, 'inferno.request_id') === other.headers.get('x-request-id'));
      expect(found).toBeDefined();
      return found!;
    }, 15_000);
    expect(own.parentSpanId ?? '').toBe('');
  });

  it('no span carries a credential, the JWT secret or prompt text', async () => {
    await call(server.url, 'GET', '/api/v1/auth/me', { token });
    await call(server.url, 'GET', '/api/v1/models', { apiKey: `${apiKey.slice(0, -4)}XXXX` });
    await eventually(() => expect(spans().some((s) => s.name === 'GET /api/v1/auth/me')).toBe(true), 15_000);
    const dump = bodies.join('\n');
    for (const secret of [apiKey, apiKey.slice(4, 24), token, token.split('.')[2]!, JWT_SECRET, PROMPT, 'lighthouses', server.adminPassword]) {
      expect(dump.includes(secret), `a secret (${secret.slice(0, 6)}…) in an exported span`).toBe(false);
    }
    expect(dump).not.toMatch(/inf_[0-9A-Za-z]{20,}|eyJ[\w-]+\.eyJ/);
  });
});

describe('tracing off', () => {
  it('is the no-op tracer unless an endpoint is set', async () => {
    expect(await startTracing(DEFAULT_CONFIG.tracing, '0.1.0', createLogger('silent'))).toBe(NO_TRACING);
  });

  it('an endpoint must be an http(s) URL without credentials', async () => {
    const { loadConfig } = await import('../src/config.js');
    expect(() => loadConfig({ env: { INFERNO_TRACING_OTLP_ENDPOINT: 'ftp://collector' }, cwd: '/tmp' })).toThrow(/\[tracing\] otlp_endpoint/);
    expect(() => loadConfig({ env: { INFERNO_TRACING_OTLP_ENDPOINT: 'http://user:hunter2@collector:4318' }, cwd: '/tmp' })).toThrow(/must not contain a user name or password/);
    expect(() => loadConfig({ env: { INFERNO_TRACING_OTLP_ENDPOINT: 'http://user:hunter2@collector:4318' }, cwd: '/tmp' })).not.toThrow(/hunter2/);
    expect(loadConfig({ env: { INFERNO_TRACING_OTLP_ENDPOINT: 'http://collector:4318' }, cwd: '/tmp' }).tracing.otlp_endpoint).toBe('http://collector:4318');
  });
});
