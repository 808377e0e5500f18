// Hostile request bodies: each is refused with a 4xx at once, and the server keeps serving others.
import net from 'node:net';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as jsonSchemas from '../src/gen/schemas.gen.js';
import * as zodSchemas from '../src/gen/zod.gen.js';
import { JSON_LIMITS, JsonShapeScanner } from '../src/http/json-shape.js';
import { specSchemaOf } from '../src/http/spec-bounds.js';
import { ApiError, MAX_ISSUE_CHARS, MAX_MESSAGE_CHARS } from '../src/http/errors.js';
import { loadSpec } from '../../contract/src/spec.js';
import { expectApiError } from '../../test/helpers/api-checks.js';
import { createApiKey, createUser } from '../../test/helpers/security.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

type Schema = Record<string, any>;

/** Sends `body` while polling /health; answers the response and the slowest /health seen meanwhile. */
async function whileProbingHealth(url: string, send: () => Promise<{ status: number; body: any }>) {
  let worstMs = 0;
  let done = false;
  const probe = (async () => {
    while (!done) {
      const started = performance.now();
      await fetch(`${url}/health`).then((r) => r.arrayBuffer());
      worstMs = Math.max(worstMs, performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  const started = performance.now();
  const response = await send();
  const elapsedMs = performance.now() - started;
  done = true;
  await probe;
  return { response, elapsedMs, worstHealthMs: worstMs };
}

describe('request bodies are bounded', () => {
  let server: TestServer;
  let guest: string;
  let adminToken: string;
  let apiKey: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000 } });
    adminToken = await login(server.url);
    await createUser(server.url, { token: adminToken }, { username: 'visitor', password: 'visitor-password-1', role: 'guest' });
    guest = await login(server.url, 'visitor', 'visitor-password-1');
    apiKey = (await createApiKey(server.url, { token: adminToken }, { name: 'bounds', permissions: ['read_models', 'run_inference'] })).key;
  });
  afterAll(() => server.close());

  it('a 1,000,000-item permissions array is refused at once, and /health stays fast', async () => {
    const body = JSON.stringify({ name: 'flood', permissions: Array.from({ length: 1_000_000 }, () => 'read_models') }).slice(0, 9_000_000);
    const { response, worstHealthMs } = await whileProbingHealth(server.url, () =>
      call(server.url, 'POST', '/api/v1/auth/api-keys', { token: guest, body: body.slice(0, body.lastIndexOf(',')) + ']}' }),
    );
    const error = expectApiError(response, 400, 'VALIDATION_ERROR');
    expect(error.details).toEqual([{ path: 'body', message: `An array or object in the JSON has more than ${JSON_LIMITS.maxEntries} entries` }]);
    expect(worstHealthMs).toBeLessThan(2000);
  });

  it('a body with 200,000 unknown keys is a 400 with a short list of details, never a 500', async () => {
    const fields = Object.fromEntries(Array.from({ length: 200_000 }, (_, i) => [`k${i}`, 1]));
    const { response, worstHealthMs } = await whileProbingHealth(server.url, () =>
      call(server.url, 'POST', '/api/v1/inference', { apiKey, body: { model: 'demo-tiny', prompt: 'x', ...fields } }),
    );
    expectApiError(response, 400, 'VALIDATION_ERROR');
    expect(JSON.stringify(response.body).length).toBeLessThan(10_000);
    expect(worstHealthMs).toBeLessThan(2000);
  });

  it('within the byte-level limits, details list at most 20 problems', async () => {
    const fields = Object.fromEntries(Array.from({ length: 5_000 }, (_, i) => [`k${i}`, 1]));
    const res = await call(server.url, 'POST', '/api/v1/inference', { apiKey, body: { model: 'demo-tiny', prompt: 'x', ...fields } });
    const error = expectApiError(res, 400, 'VALIDATION_ERROR');
    expect(error.details).toHaveLength(20);
    expect(error.details[0]).toEqual({ path: 'body.k0', message: 'Unknown field' });
  });

  it('2,500,000 content parts on /v1/chat/completions are refused at once in OpenAI shape', async () => {
    const part = '{"type":"text","text":""}';
    const body = `{"model":"demo-tiny","messages":[{"role":"user","content":[${Array(400_000).fill(part).join(',')}]}]}`;
    const { response, worstHealthMs } = await whileProbingHealth(server.url, () => call(server.url, 'POST', '/v1/chat/completions', { apiKey, body }));
    expect(response.status).toBe(400);
    expect(response.body.error.type).toBe('invalid_request_error');
    expect(worstHealthMs).toBeLessThan(2000);
    // Within the byte limits the spec's own bound applies: at most 64 parts a message.
    const parts = Array.from({ length: 65 }, () => ({ type: 'text', text: 'a' }));
    const bounded = await call(server.url, 'POST', '/v1/chat/completions', { apiKey, body: { model: 'demo-tiny', messages: [{ role: 'user', content: parts }] } });
    expect(bounded.status).toBe(400);
    expect(bounded.body.error.param).toBe('messages[0].content');
  });

  it('JSON nested deeper than 64 levels is refused before it is parsed', async () => {
    const deep = '['.repeat(5_000_000);
    const { response, worstHealthMs } = await whileProbingHealth(server.url, () => call(server.url, 'POST', '/api/v1/inference', { apiKey, body: deep }));
    expect(expectApiError(response, 400, 'VALIDATION_ERROR').details[0].message).toBe('The JSON is nested deeper than 64 levels');
    expect(worstHealthMs).toBeLessThan(2000);
    const just = `{"model":"demo-tiny","prompt":"x","stop":${'['.repeat(63)}${']'.repeat(63)}}`;
    // 64 levels pass the byte check and are then refused by the schema, not by depth.
    const res = await call(server.url, 'POST', '/api/v1/inference', { apiKey, body: just });
    expect(expectApiError(res, 400, 'VALIDATION_ERROR').details[0].message).not.toMatch(/nested/);
  });

  it('unknown fields are refused whatever their name, Object.prototype members included', async () => {
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'extra']) {
      const body = `{"name":"k","permissions":["read_models"],"${name}":{"a":1}}`;
      const res = await call(server.url, 'POST', '/api/v1/auth/api-keys', { token: adminToken, body });
      expect(expectApiError(res, 400, 'VALIDATION_ERROR').details).toEqual([{ path: `body.${name}`, message: 'Unknown field' }]);
    }
    const nested = await call(server.url, 'POST', '/api/v1/inference', { apiKey, body: '{"model":"demo-tiny","messages":[{"role":"user","content":"hi","constructor":1}]}' });
    expect(expectApiError(nested, 400, 'VALIDATION_ERROR').details).toEqual([{ path: 'body.messages[0].constructor', message: 'Unknown field' }]);
  });

  it("an unknown field's long name is cut in `details` to the spec's 512 characters", async () => {
    const res = await call(server.url, 'POST', '/api/v1/auth/api-keys', { token: adminToken, body: { name: 'k', permissions: ['read_models'], ['x'.repeat(100_000)]: 1 } });
    const [issue] = expectApiError(res, 400, 'VALIDATION_ERROR').details;
    expect(issue.path).toHaveLength(512);
    expect(issue.path).toMatch(/^body\.x+…$/);
  });

  it('duplicate permissions are refused (uniqueItems), and more than the eleven are too', async () => {
    const res = await call(server.url, 'POST', '/api/v1/auth/api-keys', { token: adminToken, body: { name: 'dup', permissions: ['read_models', 'run_inference', 'read_models'] } });
    expect(expectApiError(res, 400, 'VALIDATION_ERROR').details).toEqual([{ path: 'body.permissions[2]', message: 'Duplicate of body.permissions[0]: items must be unique' }]);
    const twelve = Array.from({ length: 12 }, () => 'read_models');
    const many = await call(server.url, 'POST', '/api/v1/auth/api-keys', { token: adminToken, body: { name: 'many', permissions: twelve } });
    expect(expectApiError(many, 400, 'VALIDATION_ERROR').details).toEqual([{ path: 'body.permissions', message: 'Too many items: at most 11' }]);
  });

  it('a name beyond its bound is refused by the spec bound', async () => {
    const res = await call(server.url, 'POST', '/api/v1/jobs', { apiKey, body: { name: 'n'.repeat(129), requests: [{ model: 'demo-tiny', prompt: 'x' }] } });
    expect(expectApiError(res, 400, 'VALIDATION_ERROR').details).toEqual([{ path: 'body.name', message: expect.stringMatching(/<=128 characters/) }]);
  });
});

describe('a request body read whole or as it trickles in', () => {
  let server: TestServer;
  let adminToken: string;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000, 'limits.max_body_bytes': 4096 } });
    adminToken = await login(server.url);
  });
  afterAll(() => server.close());

  /** A raw HTTP/1.1 request whose body goes out in `pieces`, `gapMs` apart; the answer's status and JSON body. */
  async function sendInPieces(headers: Record<string, string>, pieces: string[], gapMs: number): Promise<{ status: number; body: any }> {
    const socket = net.connect(server.port, '127.0.0.1');
    await once(socket, 'connect');
    const head = Object.entries({ Host: '127.0.0.1', Authorization: `Bearer ${adminToken}`, 'Content-Type': 'application/json', Connection: 'close', ...headers });
    let answer = '';
    socket.on('data', (chunk) => (answer += String(chunk)));
    const closed = once(socket, 'close');
    const headText = `POST /api/v1/auth/api-keys HTTP/1.1\r\n${head.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
    // With no gap the whole message goes out in one write: Node has parsed it to its end by the time the route reads it.
    if (gapMs === 0) socket.write(headText + pieces.join(''));
    else {
      socket.write(headText);
      for (const piece of pieces) {
        await new Promise((resolve) => setTimeout(resolve, gapMs));
        socket.write(piece);
      }
    }
    await closed;
    const [top, ...rest] = answer.split('\r\n\r\n');
    const status = Number(/^HTTP\/1\.1 (\d+)/.exec(top!)![1]);
    const text = rest.join('\r\n\r\n');
    // A chunked answer: its one chunk's JSON.
    return { status, body: JSON.parse(/transfer-encoding: chunked/i.test(top!) ? text.split('\r\n')[1]! : text) };
  }

  const body = '{"name":"whole","permissions":["read_models"],"bogus":true}';
  const thirds = [body.slice(0, 20), body.slice(20, 40), body.slice(40)];
  const chunked = (parts: string[]) => [...parts.map((part) => `${Buffer.byteLength(part).toString(16)}\r\n${part}\r\n`), '0\r\n\r\n'];

  it('gives the same answer for the body sent at once and sent in pieces, with a length or chunked', async () => {
    const expected = [{ path: 'body.bogus', message: 'Unknown field' }];
    const iterator = vi.spyOn(Readable.prototype, 'iterator');
    try {
      for (const [headers, pieces, takenAtOnce] of [
        [{ 'Content-Length': String(Buffer.byteLength(body)) }, thirds, true],
        // Chunked: its end is known only once Node says the message is complete, a turn later.
        [{ 'Transfer-Encoding': 'chunked' }, chunked(thirds), false],
      ] as const) {
        iterator.mockClear();
        const whole = await sendInPieces(headers, [...pieces], 0);
        expect(whole.status).toBe(400);
        expect(whole.body.error.details).toEqual(expected);
        // Of a declared length and all here: taken from the stream's buffer, nothing waited on the stream for its end.
        expect(iterator).toHaveBeenCalledTimes(takenAtOnce ? 0 : 1);
        iterator.mockClear();
        const trickled = await sendInPieces(headers, [...pieces], 30);
        expect(trickled.status).toBe(400);
        expect(trickled.body.error.details).toEqual(expected);
        expect(iterator).toHaveBeenCalled();
      }
    } finally {
      iterator.mockRestore();
    }
  });

  it('refuses a chunked body over the limit with 413, whether it came whole or trickled in', async () => {
    const big = `{"name":"${'n'.repeat(5000)}","permissions":["read_models"]}`;
    const parts = [big.slice(0, 2500), big.slice(2500)];
    for (const gapMs of [0, 30]) {
      const answer = await sendInPieces({ 'Transfer-Encoding': 'chunked' }, chunked(parts), gapMs);
      expect(answer.status).toBe(413);
      expect(answer.body.error.code).toBe('PAYLOAD_TOO_LARGE');
    }
    const fine = await sendInPieces({ 'Content-Length': String(Buffer.byteLength(body)) }, [body], 0);
    expect(fine.status).toBe(400);
  });
});

describe('JsonShapeScanner', () => {
  it('ignores brackets and commas inside strings, escaped quotes included, across chunks', () => {
    const scanner = new JsonShapeScanner();
    const text = JSON.stringify({ a: `${'['.repeat(100)}\\"${','.repeat(20_000)}"\\\\`, b: [1, 2] });
    const bytes = Buffer.from(text);
    for (let i = 0; i < bytes.length; i += 7) expect(scanner.push(bytes.subarray(i, i + 7))).toBeUndefined();
  });

  it('agrees with the real nesting depth of random JSON, however the bytes are split', () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const strings = ['', 'a', '[', ']', '{', '}', ',', '"', '\\', '\\"', 'x\\\\', 'é😀'];
    const value = (depth: number): unknown => {
      const r = random();
      if (depth > 70 || r < 0.3) return r < 0.15 ? strings[Math.floor(random() * strings.length)]!.repeat(1 + Math.floor(random() * 3)) : Math.floor(r * 100);
      const items = Array.from({ length: 1 + Math.floor(random() * 2) }, () => value(depth + 1));
      return random() < 0.5 ? items : Object.fromEntries(items.map((item, i) => [strings[i % strings.length]! + i, item]));
    };
    const depthOf = (v: unknown): number => (typeof v === 'object' && v !== null ? 1 + Math.max(0, ...Object.values(v).map(depthOf)) : 0);
    const outcomes = { accepted: 0, refused: 0 };
    for (let round = 0; round < 200; round++) {
      const doc = value(0);
      const bytes = Buffer.from(JSON.stringify(doc));
      const scanner = new JsonShapeScanner();
      let refusal: string | undefined;
      for (let at = 0; at < bytes.length && !refusal; ) {
        const size = 1 + Math.floor(random() * 17);
        refusal = scanner.push(bytes.subarray(at, at + size));
        at += size;
      }
      expect(refusal === undefined, JSON.stringify(doc).slice(0, 200)).toBe(depthOf(doc) <= JSON_LIMITS.maxDepth);
      outcomes[refusal === undefined ? 'accepted' : 'refused']++;
    }
    // Both sides of the bound were exercised.
    expect(outcomes.accepted).toBeGreaterThan(20);
    expect(outcomes.refused).toBeGreaterThan(20);
  });

  it('counts entries per container and values per body', () => {
    expect(new JsonShapeScanner().push(Buffer.from(`[${Array(JSON_LIMITS.maxEntries).fill(0).join(',')}]`))).toBeUndefined();
    expect(new JsonShapeScanner().push(Buffer.from(`[${Array(JSON_LIMITS.maxEntries + 1).fill(0).join(',')}]`))).toMatch(/more than 10000 entries/);
    const many = `[${Array(40).fill(`[${Array(9_000).fill(0).join(',')}]`).join(',')}]`;
    expect(new JsonShapeScanner().push(Buffer.from(many))).toMatch(/more than 262144 values/);
  });
});

/**
 * The fields of a schema that have no bound: a string without `maxLength` (or an enum), a number
 * without `minimum` and `maximum`, an array without `maxItems`, an object that is neither closed
 * nor has `maxProperties`. Components are named by their own name once entered (`User.username`).
 */
function unboundedFields(roots: [string, Schema][], deref: (ref: string) => [string, Schema]): string[] {
  const unbounded: string[] = [];
  const seen = new Set<Schema>();
  // `closed`: a parent's `unevaluatedProperties: false` closes the object parts of its allOf.
  const walk = (schema: Schema, at: string, closed = false): void => {
    if (schema.$ref) {
      const [name, target] = deref(schema.$ref);
      return walk(target, name);
    }
    if (seen.has(schema)) return;
    seen.add(schema);
    const closesParts = schema.unevaluatedProperties === false;
    for (const key of ['allOf', 'oneOf', 'anyOf'] as const) (schema[key] ?? []).forEach((part: Schema, i: number) => walk(part, `${at}/${key}[${i}]`, closesParts));
    const types: string[] = schema.type === undefined ? [] : [schema.type].flat();
    if (types.includes('string') && schema.maxLength === undefined && !schema.enum) unbounded.push(`${at}: string without maxLength`);
    if ((types.includes('integer') || types.includes('number')) && (schema.minimum === undefined || schema.maximum === undefined)) unbounded.push(`${at}: number without minimum and maximum`);
    if (types.includes('array')) {
      if (schema.maxItems === undefined) unbounded.push(`${at}: array without maxItems`);
      if (schema.items) walk(schema.items, `${at}[]`);
    }
    if (types.includes('object')) {
      if (schema.additionalProperties !== false && schema.maxProperties === undefined && !closed) unbounded.push(`${at}: open object without maxProperties`);
      for (const [name, property] of Object.entries(schema.properties ?? {})) walk(property as Schema, `${at}.${name}`);
      if (typeof schema.additionalProperties === 'object') walk(schema.additionalProperties, `${at}{}`);
    }
  };
  for (const [at, schema] of roots) walk(schema, at);
  return unbounded;
}

describe('the spec bounds every request body', () => {
  const components = Object.fromEntries(Object.entries(jsonSchemas).map(([name, schema]) => [name.replace(/Schema$/, ''), schema as Schema]));
  const deref = (ref: string): [string, Schema] => {
    const name = ref.replace('#/components/schemas/', '');
    return [name, components[name]!];
  };

  it('every string, number, array and object a request body can hold has a bound', () => {
    // Operations' bodies (zCreateApiKeyBody...), not components named so (zApiErrorBody); the model
    // upload's body is the raw file, bounded by `[models] max_upload_bytes`.
    const isComponent = (name: string) => Object.keys(components).some((c) => c.toLowerCase() === name.slice(1).toLowerCase());
    const bodies = Object.entries(zodSchemas).filter(([name]) => name.endsWith('Body') && !isComponent(name) && name !== 'zUploadModelBody');
    expect(bodies.length).toBeGreaterThan(8);
    const roots = bodies.map(([name, schema]): [string, Schema] => {
      const spec = specSchemaOf(schema as never);
      expect(spec, name).toBeDefined();
      return [name, spec as Schema];
    });
    expect(unboundedFields(roots, deref)).toEqual([]);
  });
});

describe('the spec bounds every response', () => {
  const spec = loadSpec();
  const deref = (ref: string): [string, Schema] => [ref.replace('#/components/schemas/', ''), spec.resolve({ $ref: ref })];
  // What cannot honestly be bounded: each with the reason. Everything else a response holds is.
  const OPEN: Record<string, string> = {
    'UserList.data: array without maxItems': 'not paginated: every user in the store',
    'ApiKeyList.data: array without maxItems': 'not paginated: every key of the user, expired ones included (only active keys are capped)',
    'ModelList.data: array without maxItems': 'not paginated: every .gguf file in the models dir',
    'OpenAIModelList.data: array without maxItems': 'not paginated: every .gguf file in the models dir',
    'UsageReport.data: array without maxItems': 'not paginated: one row per group of the stored usage',
    'CacheStats.loaded_models: array without maxItems': 'at most `[models] max_loaded`, which the operator sets without an upper limit',
    'ConfigView.server.cors_origins: array without maxItems': "the operator's own list, as long as the config file makes it",
    'ConfigView.server.cors_origins[]: string without maxLength': "the operator's own list, as long as the config file makes it",
    'ConfigView.server.cors_methods: array without maxItems': "the operator's own list, as long as the config file makes it",
    'ConfigView.server.cors_methods[]: string without maxLength': "the operator's own list, as long as the config file makes it",
    'ConfigView.server.cors_headers: array without maxItems': "the operator's own list, as long as the config file makes it",
    'ConfigView.server.cors_headers[]: string without maxLength': "the operator's own list, as long as the config file makes it",
    'GET /metrics 200 text/plain: string without maxLength': "the Prometheus text: its series are bounded by the label budgets (labels.ts), its size isn't stated",
  };

  it('every string, number, array and object a response can hold has a bound, or is listed as open with the reason', () => {
    const roots: [string, Schema][] = [];
    for (const op of spec.operations) {
      for (const [status, response] of Object.entries(op.responses)) {
        for (const [type, media] of Object.entries(response.content ?? {})) {
          const at = `${op.method} ${op.path} ${status} ${type}`;
          if (media.schema && typeof media.schema === 'object') roots.push([at, media.schema]);
          for (const [event, schema] of Object.entries(media['x-stream-events'] ?? {})) if (typeof schema === 'object') roots.push([`${at} event ${event}`, schema]);
        }
      }
    }
    expect(roots.length).toBeGreaterThan(100);
    const unbounded = unboundedFields(roots, deref);
    expect(unbounded.filter((field) => !(field in OPEN))).toEqual([]);
    // The list of open fields stays true: each is still open (drop it here once it is bounded).
    expect(Object.keys(OPEN).filter((field) => !unbounded.includes(field))).toEqual([]);
  });

  it("a path or message longer than the spec's bounds is cut, so an error stays within them", () => {
    const long = new ApiError('VALIDATION_ERROR', 'm'.repeat(5000), [{ path: `body.${'k'.repeat(5000)}`, message: 'x'.repeat(5000) }]);
    expect(long.message).toHaveLength(MAX_MESSAGE_CHARS);
    expect(long.details).toEqual([{ path: expect.stringMatching(/^body\.k+…$/), message: expect.stringMatching(/^x+…$/) }]);
    expect((long.details as { path: string }[])[0]!.path).toHaveLength(MAX_ISSUE_CHARS);
  });
});
