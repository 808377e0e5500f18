// The SDK's HTTP layer (core/http.ts) builds what hey-api's fetch client would send: the same URL
// (hey-api's buildUrl is the oracle), headers merged case-insensitively, no Content-Type without a
// body, and a credential only where the request does not already carry one.
import { describe, expect, it } from 'vitest';
import { buildRequestUrl, createHttpClient } from '../src/core/http.js';
import { buildUrl, createQuerySerializer } from '../src/gen/client/utils.gen.js';
import { createConfig } from '../src/gen/client/index.js';
import { createUser, deleteUser, listJobs, listModels } from '../src/gen/sdk.gen.js';

const querySerializer = createQuerySerializer(createConfig().querySerializer as Parameters<typeof createQuerySerializer>[0]);
const heyApi = (url: string, path?: Record<string, unknown>, query?: Record<string, unknown>) =>
  buildUrl({ baseUrl: 'http://h:1', url, path, query, querySerializer } as Parameters<typeof buildUrl>[0]);

describe('buildRequestUrl', () => {
  it.each([
    ['/api/v1/models', undefined, undefined],
    ['/api/v1/models/{id}', { id: 'a b/ü?#' }, undefined],
    ['/api/v1/jobs/{id}/cancel', { id: 42 }, undefined],
    ['/api/v1/users/{id}', {}, undefined],
    ['/api/v1/jobs', undefined, { all: true, limit: 10, cursor: 'c&d=e', user_id: undefined, status: null }],
    ['/api/v1/usage', undefined, { since: '2026-12-01T00:00:00.000Z', group_by: '' }],
    ['/api/v1/jobs', undefined, { ids: ['a', 'b c'], filter: { state: 'done' } }],
    ['/a/{.label}/{;matrix}/{list*}', { label: 'x', matrix: 'y', list: ['1', '2'] }, undefined],
    ['/api/v1/models/{id}', { id: ['a', 'b'] }, { q: 1 }],
  ])('%s gives what hey-api gives (path %j, query %j)', (url, path, query) => {
    expect(buildRequestUrl('http://h:1', url, path, query)).toBe(heyApi(url, path, query));
  });
});

function capture() {
  const sent: { url: string; init: RequestInit }[] = [];
  const fetch = (async (url: string, init: RequestInit) => {
    sent.push({ url, init });
    return new Response('{"ok":true}', { status: 200, headers: { 'content-type': 'application/json' } });
  }) as unknown as typeof globalThis.fetch;
  return { sent, client: createHttpClient({ baseUrl: 'http://h:1/', headers: { 'X-Team': 'a', 'content-type': 'text/plain' }, fetch }) };
}

describe('createHttpClient', () => {
  it('sends plain headers with lowercased names: per-request ones win, null removes, no Content-Type without a body', async () => {
    const { sent, client } = capture();
    const { data } = await listModels({ client, headers: { 'x-team': 'b', 'X-Trace': null } as never, auth: () => 'key' });
    expect(data).toEqual({ ok: true });
    expect(sent[0]!.url).toBe('http://h:1/api/v1/models');
    expect(sent[0]!.init).toMatchObject({ method: 'GET', headers: { 'x-team': 'b', 'x-api-key': 'key' } });
    expect(sent[0]!.init.headers).not.toHaveProperty('content-type');
    expect(sent[0]!.init).not.toHaveProperty('body');
    await deleteUser({ client, path: { id: '7' }, auth: () => 'key' });
    expect(sent[1]).toMatchObject({ url: 'http://h:1/api/v1/users/7', init: { method: 'DELETE' } });
    expect(sent[1]!.init.headers).not.toHaveProperty('content-type');
  });

  it('serializes a JSON body with one Content-Type, whatever the case it was given in', async () => {
    const { sent, client } = capture();
    await createUser({ client, body: { username: 'ada', password: 'a-long-password' }, headers: { 'Idempotency-Key': 'k1' } as never, auth: () => 'key' });
    expect(sent[0]!.init).toMatchObject({
      method: 'POST',
      body: '{"username":"ada","password":"a-long-password"}',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'k1', 'x-api-key': 'key' },
    });
  });

  it('sends the credential of the scheme the token is for, awaited only when it is a promise, and not over a header given', async () => {
    const { sent, client } = capture();
    await listJobs({ client, query: { limit: 5 }, auth: (scheme) => (scheme.type === 'http' ? Promise.resolve('jwt') : undefined) });
    expect(sent[0]!.url).toBe('http://h:1/api/v1/jobs?limit=5');
    expect(sent[0]!.init.headers).toMatchObject({ authorization: 'Bearer jwt' });
    expect(sent[0]!.init.headers).not.toHaveProperty('x-api-key');
    await listModels({ client, headers: { 'X-API-Key': 'given' } as never, auth: () => 'key' });
    expect(sent[1]!.init.headers).toMatchObject({ 'x-api-key': 'given' });
  });
});
