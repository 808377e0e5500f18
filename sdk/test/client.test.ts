import { afterEach, describe, expect, it } from 'vitest';
import {
  AuthenticationError,
  ConflictError,
  InfernoClient,
  APIError,
  InfernoError,
  InternalServerError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitError,
  ServiceUnavailableError,
  UnsupportedMediaTypeError,
  ValidationError,
} from '../src/index.js';
import { apiError, type LocalServer, MODEL_LIST, sendJson, startLocalServer } from './helpers/http.js';

let server: LocalServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const ID = '0d9c4f3e-3f5b-4a37-9e0b-6a2f1d1c2b3a';

describe('resources map onto the operations of the spec', () => {
  it.each([
    ['health.check', (c: InfernoClient) => c.health.check(), 'GET', '/health', undefined],
    ['auth.me', (c: InfernoClient) => c.auth.me(), 'GET', '/api/v1/auth/me', undefined],
    ['apiKeys.create', (c: InfernoClient) => c.apiKeys.create({ name: 'ci', permissions: ['read_models'] }), 'POST', '/api/v1/auth/api-keys', { name: 'ci', permissions: ['read_models'] }],
    ['apiKeys.list', (c: InfernoClient) => c.apiKeys.list(), 'GET', '/api/v1/auth/api-keys', undefined],
    ['apiKeys.list(user_id)', (c: InfernoClient) => c.apiKeys.list({ user_id: ID }), 'GET', `/api/v1/auth/api-keys?user_id=${ID}`, undefined],
    ['users.list', (c: InfernoClient) => c.users.list(), 'GET', '/api/v1/users', undefined],
    ['users.create', (c: InfernoClient) => c.users.create({ username: 'bob', password: 'twelve-chars!', role: 'guest' }), 'POST', '/api/v1/users', { username: 'bob', password: 'twelve-chars!', role: 'guest' }],
    ['users.get', (c: InfernoClient) => c.users.get(ID), 'GET', `/api/v1/users/${ID}`, undefined],
    ['users.update', (c: InfernoClient) => c.users.update(ID, { role: 'admin' }), 'PATCH', `/api/v1/users/${ID}`, { role: 'admin' }],
    ['models.list', (c: InfernoClient) => c.models.list(), 'GET', '/api/v1/models', undefined],
    ['models.get', (c: InfernoClient) => c.models.get('demo-tiny'), 'GET', '/api/v1/models/demo-tiny', undefined],
    ['models.load', (c: InfernoClient) => c.models.load('demo-tiny'), 'POST', '/api/v1/models/demo-tiny/load', undefined],
    ['models.unload', (c: InfernoClient) => c.models.unload('demo-tiny'), 'POST', '/api/v1/models/demo-tiny/unload', undefined],
    ['inference.create', (c: InfernoClient) => c.inference.create({ model: 'demo-tiny', prompt: 'Hi', max_tokens: 4 }), 'POST', '/api/v1/inference', { model: 'demo-tiny', prompt: 'Hi', max_tokens: 4, stream: false }],
    ['embeddings.create', (c: InfernoClient) => c.embeddings.create({ model: 'demo-tiny', input: ['a', 'b'] }), 'POST', '/api/v1/embeddings', { model: 'demo-tiny', input: ['a', 'b'] }],
    ['metrics.get', (c: InfernoClient) => c.metrics.get(), 'GET', '/api/v1/metrics', undefined],
    ['config.get', (c: InfernoClient) => c.config.get(), 'GET', '/api/v1/config', undefined],
    ['config.update', (c: InfernoClient) => c.config.update({ rate_limit: { requests_per_minute: 120 } }), 'PATCH', '/api/v1/config', { rate_limit: { requests_per_minute: 120 } }],
  ] as const)('%s -> %s %s', async (_name, call, method, url, body) => {
    server = await startLocalServer((_req, res) => sendJson(res, 200, { echo: true }));
    const result = await call(new InfernoClient({ baseUrl: server.url, apiKey: 'k', headers: { 'x-app': 'tests' } }));
    expect(result).toEqual({ echo: true });
    const [request] = server.requests;
    expect([request!.method, request!.url]).toEqual([method, url]);
    expect(request!.headers['x-app']).toBe('tests');
    if (body === undefined) {
      expect(request!.body).toBe('');
    } else {
      expect(JSON.parse(request!.body)).toEqual(body);
      expect(request!.headers['content-type']).toBe('application/json');
    }
  });

  it.each([
    ['apiKeys.revoke', (c: InfernoClient) => c.apiKeys.revoke(ID), 'DELETE', `/api/v1/auth/api-keys/${ID}`],
    ['users.delete', (c: InfernoClient) => c.users.delete(ID), 'DELETE', `/api/v1/users/${ID}`],
  ] as const)('%s -> %s %s resolves to undefined on 204', async (_name, call, method, url) => {
    server = await startLocalServer((_req, res) => void res.writeHead(204, { 'x-request-id': 'r' }).end());
    await expect(call(new InfernoClient({ baseUrl: server.url, apiKey: 'k' }))).resolves.toBeUndefined();
    expect([server.requests[0]!.method, server.requests[0]!.url]).toEqual([method, url]);
  });

  it('models.delete -> DELETE /api/v1/models/{id}', async () => {
    server = await startLocalServer((_req, res) => void res.writeHead(204).end());
    await expect(new InfernoClient({ baseUrl: server.url, apiKey: 'k' }).models.delete('old')).resolves.toBeUndefined();
    expect([server.requests[0]!.method, server.requests[0]!.url]).toEqual(['DELETE', '/api/v1/models/old']);
  });

  it('auditLogs.list -> GET /api/v1/audit-logs with the filters, as a page', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 200, { data: [{ id: 1 }], next_cursor: null }));
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k' });
    const page = await client.auditLogs.list({ action: 'auth.login', limit: 10 });
    expect(page.data).toEqual([{ id: 1 }]);
    expect(page.hasNextPage()).toBe(false);
    expect(server.requests[0]!.url).toBe('/api/v1/audit-logs?action=auth.login&limit=10');
  });

  it('models.upload streams a ReadableStream body (no Content-Length) and reports progress', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 201, MODEL_LIST.data[0]));
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k' });
    const chunks = [new Uint8Array(1000).fill(1), new Uint8Array(500).fill(2)];
    let pulled = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = chunks[pulled++];
        if (next) controller.enqueue(next);
        else controller.close();
      },
    });
    const progress: number[] = [];
    await client.models.upload({ id: 'streamed', file: stream, onProgress: ({ sent }) => progress.push(sent) });
    const [request] = server.requests;
    expect(request!.headers['content-length']).toBeUndefined();
    expect(request!.headers['transfer-encoding']).toBe('chunked');
    expect(request!.body.length).toBe(1500);
    expect(progress).toEqual([1000, 1500]);
    const blobProgress: Array<number | undefined> = [];
    await client.models.upload({ id: 'blob', file: new Blob([new Uint8Array(10)]), onProgress: ({ total }) => blobProgress.push(total) });
    expect(blobProgress.at(-1)).toBe(10);
  });

  it('models.upload sends the bytes as application/octet-stream under the id', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 201, MODEL_LIST.data[0]));
    const client = new InfernoClient({ baseUrl: server.url, apiKey: 'k' });
    const bytes = new Uint8Array([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0]);
    await expect(client.models.upload({ id: 'my-model', file: bytes, overwrite: true })).resolves.toEqual(MODEL_LIST.data[0]);
    await client.models.upload({ id: 'other', file: new Blob([bytes]) });
    const [first, second] = server.requests;
    expect([first!.method, first!.url]).toEqual(['POST', '/api/v1/models?id=my-model&overwrite=true']);
    expect(first!.headers['content-type']).toBe('application/octet-stream');
    expect(Buffer.from(first!.body, 'latin1')).toEqual(Buffer.from(bytes));
    expect(second!.url).toBe('/api/v1/models?id=other');
    expect(second!.headers['content-length']).toBe('8');
  });

  it('metrics.prometheus() returns the text exposition', async () => {
    const text = '# TYPE inferno_http_requests_total counter\ninferno_http_requests_total 3\n';
    server = await startLocalServer((_req, res) => void res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text));
    await expect(new InfernoClient({ baseUrl: server.url, apiKey: 'k' }).metrics.prometheus()).resolves.toBe(text);
    expect(server.requests[0]!.url).toBe('/metrics');
  });

  it('merges per-request headers over the client ones, and a trailing slash in baseUrl is fine', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 200, MODEL_LIST));
    const client = new InfernoClient({ baseUrl: `${server.url}/`, apiKey: 'k', headers: { 'x-a': '1', 'x-b': '1' } });
    await client.models.list({ headers: { 'x-b': '2' } });
    expect(server.requests[0]!.url).toBe('/api/v1/models');
    expect(server.requests[0]!.headers).toMatchObject({ 'x-a': '1', 'x-b': '2' });
  });

  it('health.ready() answers { ready: false } on 503, without retrying', async () => {
    server = await startLocalServer((_req, res) => sendJson(res, 503, { ready: false, checks: { engine: false } }));
    const client = new InfernoClient({ baseUrl: server.url });
    await expect(client.health.ready()).resolves.toEqual({ ready: false, checks: { engine: false } });
    expect(server.requests).toHaveLength(1);
  });
});

describe('errors from the server', () => {
  it.each([
    [400, 'VALIDATION_ERROR', ValidationError],
    [401, 'AUTHENTICATION_FAILED', AuthenticationError],
    [403, 'PERMISSION_DENIED', PermissionDeniedError],
    [404, 'NOT_FOUND', NotFoundError],
    [405, 'METHOD_NOT_ALLOWED', MethodNotAllowedError],
    [409, 'CONFLICT', ConflictError],
    [413, 'PAYLOAD_TOO_LARGE', PayloadTooLargeError],
    [415, 'UNSUPPORTED_MEDIA_TYPE', UnsupportedMediaTypeError],
    [429, 'RATE_LIMITED', RateLimitError],
    [500, 'INTERNAL_ERROR', InternalServerError],
    [503, 'SERVICE_UNAVAILABLE', ServiceUnavailableError],
  ] as const)('%i %s -> %o with status, code, message, details and requestId', async (status, code, ErrorClass) => {
    const details = code === 'VALIDATION_ERROR' ? [{ path: 'body.name', message: 'Required' }] : null;
    server = await startLocalServer((_req, res) =>
      sendJson(res, status, apiError(code, `about ${code}`, details), { 'x-request-id': `req-${status}` }),
    );
    const error = (await new InfernoClient({ baseUrl: server.url, apiKey: 'k', maxRetries: 0 })
      .users.create({ username: 'x', password: 'long-enough-password' })
      .catch((e: unknown) => e)) as APIError;
    expect(error).toBeInstanceOf(ErrorClass);
    expect(error).toMatchObject({ status, code, message: `about ${code}`, details, requestId: `req-${status}` });
    expect(error.headers.get('content-type')).toBe('application/json');
  });

  it('gives a non-JSON error page a useful error of the status class', async () => {
    server = await startLocalServer((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html><body><h1>502 Bad Gateway</h1><p>upstream unreachable</p></body></html>');
    });
    const error = (await new InfernoClient({ baseUrl: server.url, apiKey: 'k', maxRetries: 0 })
      .models.list()
      .catch((e: unknown) => e)) as APIError;
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(error.status).toBe(502);
    expect(error.message).toBe('HTTP 502 Bad Gateway: 502 Bad Gateway upstream unreachable');
    expect(error.requestId).toBeUndefined();
  });

  it('gives an empty error body an error of the status class', async () => {
    server = await startLocalServer((_req, res) => void res.writeHead(403, { 'x-request-id': 'req-e' }).end());
    const error = (await new InfernoClient({ baseUrl: server.url, apiKey: 'k' })
      .models.list()
      .catch((e: unknown) => e)) as APIError;
    expect(error).toBeInstanceOf(PermissionDeniedError);
    expect(error.message).toBe('HTTP 403 Forbidden (no error body)');
    expect(error.requestId).toBe('req-e');
  });
});
