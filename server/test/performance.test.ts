// The performance work (issue 12) keeps its behaviour: a cached model listing that still sees every
// change, coalesced event streams that stay complete and well-formed, one-walk log redaction, and
// buffered logs that are all written by the time the process exits. No timings asserted here:
// bench/perf.ts measures.
import { copyFileSync, mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDemoModel } from '../src/engine/demo-model.js';
import { ModelCatalog } from '../src/engine/model-catalog.js';
import { EventStream } from '../src/http/event-stream.js';
import type { AppContext } from '../src/http/context.js';
import { createLogger } from '../src/logging/logger.js';
import { eventually } from '../../test/helpers/api-checks.js';
import { killGroup, spawnServer, tempRoot } from '../../test/helpers/child-server.js';
import { waitForReady } from '../../test/helpers/api-checks.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';
import { createApiKey, createUser } from '../../test/helpers/security.js';
import { withCredentialCache } from '../src/store/credential-cache.js';
import type { Store } from '../src/store/types.js';

const ids = async (catalog: ModelCatalog) => (await catalog.list()).map((m) => m.id);

describe('the model catalog caches its listing and still sees every change', () => {
  let dir: string;
  let demo: string;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-catalog-'));
    demo = path.join(dir, 'source.bin');
    await writeDemoModel(demo, { preset: 'tiny' });
    copyFileSync(demo, path.join(dir, 'a.gguf'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a file copied in or removed behind its back shows through the directory watcher, with no TTL to help', async () => {
    const catalog = new ModelCatalog(dir, () => false, () => undefined, { listTtlMs: 3_600_000 });
    try {
      expect(await ids(catalog)).toEqual(['a']);
      copyFileSync(demo, path.join(dir, 'b.gguf'));
      await eventually(async () => expect(await ids(catalog)).toEqual(['a', 'b']), 10_000);
      unlinkSync(path.join(dir, 'b.gguf'));
      await eventually(async () => expect(await ids(catalog)).toEqual(['a']), 10_000);
    } finally {
      catalog.close();
    }
  });

  it('invalidate() drops the listing at once; the TTL bounds it where no watcher is heard; `loaded` is always live', async () => {
    let loaded = false;
    const catalog = new ModelCatalog(dir, () => loaded, () => undefined, { listTtlMs: 3_600_000 });
    try {
      expect(await ids(catalog)).toEqual(['a']);
      catalog.close(); // no watcher from here on
      copyFileSync(demo, path.join(dir, 'c.gguf'));
      catalog.invalidate();
      expect(await ids(catalog)).toEqual(['a', 'c']);
      loaded = true;
      expect((await catalog.list()).every((m) => m.loaded)).toBe(true);
    } finally {
      catalog.close();
      unlinkSync(path.join(dir, 'c.gguf'));
    }
    const short = new ModelCatalog(dir, () => false, () => undefined, { listTtlMs: 0 });
    short.close();
    expect(await ids(short)).toEqual(['a']);
    copyFileSync(demo, path.join(dir, 'd.gguf'));
    await new Promise((r) => setTimeout(r, 5));
    expect(await ids(short)).toEqual(['a', 'd']);
    unlinkSync(path.join(dir, 'd.gguf'));
  });
});

describe('the models API with the cached listing', () => {
  let server: TestServer;
  let token: string;
  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000 } });
    token = await login(server.url);
  });
  afterAll(() => server.close());

  it('an upload is listed, and a deletion gone, on the very next request', async () => {
    const file = path.join(server.modelsDir, 'demo-tiny.gguf');
    const { readFileSync } = await import('node:fs');
    const bytes = readFileSync(file);
    const list = async () => ((await call(server.url, 'GET', '/api/v1/models', { token })).body.data as { id: string }[]).map((m) => m.id);
    expect(await list()).toEqual(['demo-tiny']);
    const upload = await fetch(`${server.url}/api/v1/models?id=copy`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream' }, body: bytes });
    expect(upload.status).toBe(201);
    expect(await list()).toEqual(['copy', 'demo-tiny']);
    const openai = await call(server.url, 'GET', '/v1/models', { token });
    expect((openai.body.data as { id: string }[]).map((m) => m.id)).toContain('copy');
    expect((await call(server.url, 'DELETE', '/api/v1/models/copy', { token })).status).toBe(204);
    expect(await list()).toEqual(['demo-tiny']);
  });

  it('streams stay complete and well-formed: every event parsed in order, the text the same as unstreamed, done last', async () => {
    const body = { model: 'demo-tiny', prompt: 'Hello world', temperature: 0, seed: 3, max_tokens: 96 };
    const plain = await call(server.url, 'POST', '/api/v1/inference', { token, body });
    expect(plain.status).toBe(200);
    const streamed = await fetch(`${server.url}/api/v1/inference`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
    const raw = await streamed.text();
    expect(raw.endsWith('\n\n')).toBe(true);
    const blocks = raw.slice(0, -2).split('\n\n');
    const events = blocks.map((block) => {
      const match = /^event: (\w+)\ndata: (.*)$/.exec(block);
      expect(match, `malformed event ${JSON.stringify(block)}`).not.toBeNull();
      return { event: match![1]!, data: JSON.parse(match![2]!) };
    });
    expect(events.at(-1)!.event).toBe('done');
    expect(events.slice(0, -1).every((e) => e.event === 'token')).toBe(true);
    expect(events.slice(0, -1).map((e) => e.data.text).join('')).toBe(plain.body.text);
    expect(events.at(-1)!.data.usage.completion_tokens).toBe(plain.body.usage.completion_tokens);

    const openai = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
    const chunks = (await openai.text()).slice(0, -2).split('\n\n');
    expect(chunks.at(-1)).toBe('data: [DONE]');
    const texts = chunks.slice(0, -1).map((c) => {
      expect(c.startsWith('data: ')).toBe(true);
      return (JSON.parse(c.slice(6)) as { choices: { text: string }[] }).choices[0]?.text ?? '';
    });
    expect(texts.join('')).toBe(plain.body.text);
  });

  it('a plain prompt is measured exactly only near the context limit: too long is still refused', async () => {
    const contextSize = server.config.engine.context_size;
    // Both go past the byte bound (bytes + max_tokens > context), so both are counted exactly.
    const long = await call(server.url, 'POST', '/api/v1/inference', { token, body: { model: 'demo-tiny', prompt: 'hello '.repeat(contextSize), max_tokens: 4 } });
    expect(long.status).toBe(400);
    const fits = await call(server.url, 'POST', '/api/v1/inference', { token, body: { model: 'demo-tiny', prompt: 'hello', max_tokens: contextSize - 8 } });
    expect(fits.status).toBe(200);
    // Well within the bound: not tokenized before generation, and generated as asked.
    const small = await call(server.url, 'POST', '/api/v1/inference', { token, body: { model: 'demo-tiny', prompt: 'hello', max_tokens: 4, temperature: 0 } });
    expect(small.status).toBe(200);
    expect(small.body.usage.completion_tokens).toBeGreaterThan(0);
  });
});

describe('coalesced event stream', () => {
  function fakeStream() {
    const writes: string[] = [];
    let ended: string | undefined;
    const res = {
      writableEnded: false,
      destroyed: false,
      headersSent: false,
      setHeader: () => undefined,
      flushHeaders: () => undefined,
      socket: { setNoDelay: () => undefined },
      write(chunk: string) {
        writes.push(chunk);
        res.headersSent = true;
        return true;
      },
      end(chunk?: string) {
        ended = chunk ?? '';
        res.writableEnded = true;
      },
    };
    const ctx = { res, status: 0, respond: true } as unknown as AppContext;
    return { stream: new EventStream(ctx), writes, ended: () => ended };
  }
  const turn = () => new Promise((r) => setImmediate(() => setImmediate(() => setImmediate(r))));

  it('the first event goes out at once (with the headers); what is sent in one turn after it, in one write, in order; end() writes what is left', async () => {
    const { stream, writes, ended } = fakeStream();
    stream.send('token', { text: 'a' });
    expect(writes).toEqual(['event: token\ndata: {"text":"a"}\n\n']);
    stream.send('token', { text: 'b' });
    stream.send('token', { text: 'c' });
    stream.data('[DONE]');
    expect(writes).toHaveLength(1);
    await turn();
    expect(writes).toEqual(['event: token\ndata: {"text":"a"}\n\n', 'event: token\ndata: {"text":"b"}\n\nevent: token\ndata: {"text":"c"}\n\ndata: [DONE]\n\n']);
    stream.send('done', { ok: true });
    stream.end();
    expect(ended()).toBe('event: done\ndata: {"ok":true}\n\n');
    await turn();
    expect(writes).toHaveLength(2); // nothing written after the end
  });
});

describe('logs', () => {
  it('secret fields are censored (top level and one down) in the same walk that redacts patterns', () => {
    const lines: string[] = [];
    const logger = createLogger('info', new Writable({ write: (c, _e, done) => (lines.push(String(c)), done()) }));
    logger.info({ password: 'p1', user: { token: 't1', name: 'ok' }, headers: { a: 1 }, note: 'Bearer abc.def', plain: 'nothing here', n: 3 }, 'x');
    const line = JSON.parse(lines[0]!);
    expect(line).toMatchObject({ password: '[REDACTED]', user: { token: '[REDACTED]', name: 'ok' }, headers: '[REDACTED]', note: 'Bearer [REDACTED]', plain: 'nothing here', n: 3 });
    expect(lines[0]).not.toMatch(/p1|t1|abc/);
  });

  it('buffered log lines are all written by the time the process exits on SIGTERM', async () => {
    const dir = tempRoot();
    const server = await spawnServer(dir, { group: true, args: ['--set', 'rate_limit.requests_per_minute=10000'] });
    try {
      await waitForReady(server.url, 60_000);
      const token = await login(server.url);
      const requestIds: string[] = [];
      for (let i = 0; i < 25; i++) {
        const res = await call(server.url, 'GET', '/api/v1/models', { token });
        requestIds.push(res.headers.get('x-request-id')!);
      }
      server.process.kill('SIGTERM');
      expect(await server.exited).toBe(0);
      const lines = server.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { request_id?: string; msg: string });
      const logged = new Set(lines.map((l) => l.request_id));
      expect(requestIds.filter((id) => !logged.has(id))).toEqual([]);
      expect(lines.some((l) => l.msg === 'shutting down')).toBe(true);
    } finally {
      killGroup(server, 'SIGKILL'); // the whole group: tsx does not pass SIGKILL on
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('cached credentials: every change through the server takes effect on the next request', () => {
  let server: TestServer;
  let admin: string;
  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000 } });
    admin = await login(server.url);
  });
  afterAll(() => server.close());
  const models = (auth: { token?: string; apiKey?: string }) => call(server.url, 'GET', '/api/v1/models', auth).then((r) => r.status);

  it('revoking a key, disabling, demoting and deleting its owner', async () => {
    const user = await createUser(server.url, { token: admin }, { username: 'cached-user', password: 'cached-user-password-1', role: 'user' });
    const userToken = await login(server.url, 'cached-user', 'cached-user-password-1');
    const first = await createApiKey(server.url, { token: userToken }, { name: 'one', permissions: ['read_models'] });
    const second = await createApiKey(server.url, { token: userToken }, { name: 'two', permissions: ['read_models', 'use_streaming'] });
    // Warm the cache: the same key answers twice.
    expect(await models({ apiKey: first.key })).toBe(200);
    expect(await models({ apiKey: first.key })).toBe(200);
    expect((await call(server.url, 'DELETE', `/api/v1/auth/api-keys/${first.id}`, { token: userToken })).status).toBe(204);
    expect(await models({ apiKey: first.key })).toBe(401);
    expect(await models({ apiKey: second.key })).toBe(200);

    expect((await call(server.url, 'PATCH', `/api/v1/users/${user.id}`, { token: admin, body: { disabled: true } })).status).toBe(200);
    expect(await models({ apiKey: second.key })).toBe(401);
    expect(await models({ token: userToken })).toBe(401);
    expect((await call(server.url, 'PATCH', `/api/v1/users/${user.id}`, { token: admin, body: { disabled: false } })).status).toBe(200);
    expect(await models({ apiKey: second.key })).toBe(200);

    // Demoted to guest (no use_streaming): the key keeps only what the owner still has, at once.
    const permissions = async () => {
      const me = await call(server.url, 'GET', '/api/v1/auth/me', { apiKey: second.key });
      expect(me.status).toBe(200);
      return me.body.permissions as string[];
    };
    expect(await permissions()).toContain('use_streaming');
    expect((await call(server.url, 'PATCH', `/api/v1/users/${user.id}`, { token: admin, body: { role: 'guest' } })).status).toBe(200);
    expect(await permissions()).not.toContain('use_streaming');

    expect((await call(server.url, 'DELETE', `/api/v1/users/${user.id}`, { token: admin })).status).toBe(204);
    expect(await models({ apiKey: second.key })).toBe(401);
  });

  it('logging out and changing the password end the JWT on the next request', async () => {
    await createUser(server.url, { token: admin }, { username: 'cached-jwt', password: 'cached-jwt-password-1', role: 'user' });
    const a = await login(server.url, 'cached-jwt', 'cached-jwt-password-1');
    const b = await login(server.url, 'cached-jwt', 'cached-jwt-password-1');
    expect(await models({ token: a })).toBe(200);
    expect(await models({ token: b })).toBe(200);
    expect((await call(server.url, 'POST', '/api/v1/auth/logout', { token: a })).status).toBe(204);
    expect(await models({ token: a })).toBe(401);
    expect(await models({ token: b })).toBe(200);
    const id = (await call(server.url, 'GET', '/api/v1/auth/me', { token: b })).body.id ?? (await call(server.url, 'GET', '/api/v1/auth/me', { token: b })).body.user.id;
    expect((await call(server.url, 'PATCH', `/api/v1/users/${id}`, { token: admin, body: { password: 'cached-jwt-password-2' } })).status).toBe(200);
    expect(await models({ token: b })).toBe(401);
  });
});

describe('withCredentialCache', () => {
  function counting() {
    const calls: string[] = [];
    const user = { id: 'u1', username: 'u', role: 'user', disabled: false, sessionVersion: 0 };
    const key = { id: 'k1', userId: 'u1', keyHash: 'h1', revokedAt: null, lastUsedAt: null };
    const inner = {
      findApiKeyByHash: async (hash: string) => (calls.push(`key:${hash}`), hash === 'h1' ? { ...key } : undefined),
      getUser: async (id: string) => (calls.push(`user:${id}`), id === 'u1' ? { ...user } : undefined),
      isTokenRevoked: async (jti: string) => (calls.push(`jti:${jti}`), false),
      revokeApiKey: async () => true,
      touchApiKey: async () => undefined,
      countUsers: async () => (calls.push('count'), 1),
    } as unknown as Store;
    return { inner, calls };
  }

  it('answers from memory within the bound, asks again after it, never keeps an unknown key, drops on writes', async () => {
    let clock = 0;
    const { inner, calls } = counting();
    const store = withCredentialCache(inner, { ttlMs: 1000, now: () => clock });
    await store.findApiKeyByHash('h1');
    await store.findApiKeyByHash('h1');
    await store.getUser('u1');
    await store.getUser('u1');
    await store.isTokenRevoked('j');
    await store.isTokenRevoked('j');
    expect(calls).toEqual(['key:h1', 'user:u1', 'jti:j']);
    await store.findApiKeyByHash('nope');
    await store.findApiKeyByHash('nope');
    expect(calls.filter((c) => c === 'key:nope')).toHaveLength(2);
    clock = 1001;
    await store.getUser('u1');
    expect(calls.filter((c) => c === 'user:u1')).toHaveLength(2);
    await store.revokeApiKey('k1');
    await store.findApiKeyByHash('h1');
    expect(calls.filter((c) => c === 'key:h1')).toHaveLength(2);
    await store.touchApiKey('k1', 'then');
    expect((await store.findApiKeyByHash('h1'))?.lastUsedAt).toBe('then');
    // A change by another connection (SQLite's data_version moved) drops everything at once.
    let version = 1;
    const versioned = withCredentialCache(inner, { ttlMs: 60_000, now: () => clock, externalVersion: () => version });
    await versioned.getUser('u1');
    await versioned.getUser('u1');
    const before = calls.filter((c) => c === 'user:u1').length;
    version = 2;
    await new Promise((r) => setImmediate(r)); // a later turn, as a later request is
    await versioned.getUser('u1');
    expect(calls.filter((c) => c === 'user:u1').length).toBe(before + 1);
    // Everything else passes through.
    expect(await store.countUsers()).toBe(1);
    expect(withCredentialCache(inner, { ttlMs: 0 })).toBe(inner);
  });

  it("shared: one request's lookups run together share one count read, sent after the request began", async () => {
    const { inner, calls } = counting();
    let count = 0;
    const reads: (() => void)[] = [];
    const sharedVersion = () =>
      new Promise<number>((resolve) => {
        const at = count;
        reads.push(() => resolve(at));
      });
    const store = withCredentialCache(inner, { ttlMs: 60_000, sharedVersion });
    // Held, with the count seen (the first read always drops what is held).
    await store.findApiKeyByHash('h1');
    await store.getUser('u1');
    const priming = store.getUser('u1');
    reads.shift()!();
    await priming;
    await store.findApiKeyByHash('h1'); // dropped by the priming read: a miss again
    const asked = calls.length;

    // A key then its owner, as authenticate looks them up: one read for both, from memory.
    const request = store.together!(async () => {
      const key = await store.findApiKeyByHash('h1');
      return store.getUser(key!.userId);
    });
    await new Promise((r) => setImmediate(r));
    expect(reads).toHaveLength(1);
    reads.shift()!();
    expect((await request)?.id).toBe('u1');
    expect(reads).toHaveLength(0);
    expect(calls.length).toBe(asked);

    // Apart, each hit waits for a read of its own.
    const key = store.findApiKeyByHash('h1');
    await new Promise((r) => setImmediate(r));
    reads.shift()!();
    await key;
    const user = store.getUser('u1');
    await new Promise((r) => setImmediate(r));
    expect(reads).toHaveLength(1);
    reads.shift()!();
    await user;
    // A change committed before a request began is seen by the read its lookups share.
    count = 1;
    const after = store.together!(() => store.getUser('u1'));
    await new Promise((r) => setImmediate(r));
    reads.shift()!();
    await after;
    expect(calls.filter((c) => c === 'user:u1').length).toBeGreaterThan(calls.slice(0, asked).filter((c) => c === 'user:u1').length);

    // Work begun inside a request's scope (a timer) but run after it does not reuse its check.
    let later: Promise<unknown> | undefined;
    const scoped = store.together!(async () => {
      await store.getUser('u1'); // a hit: sends the scope's read
      setTimeout(() => (later = store.getUser('u1')), 0);
    });
    await new Promise((r) => setImmediate(r));
    reads.shift()!();
    await scoped;
    await new Promise((r) => setTimeout(r, 5));
    expect(later).toBeDefined();
    await new Promise((r) => setImmediate(r));
    expect(reads).toHaveLength(1); // its own read
    reads.shift()!();
    await later;
  });

  it('shared: a miss goes to the store; a hit waits for a count read sent after it, one read for all that wait; a failed or slow read sends it to the store', async () => {
    const { inner, calls } = counting();
    // The shared count as a database would answer it: as it was when the read was sent.
    let count = 0;
    const reads: { answer: () => void; fail: () => void }[] = [];
    const sharedVersion = () =>
      new Promise<number>((resolve, reject) => {
        const at = count;
        reads.push({ answer: () => resolve(at), fail: () => reject(new Error('connection lost')) });
      });
    const store = withCredentialCache(inner, { ttlMs: 60_000, sharedVersion, sharedVersionTimeoutMs: 200 });
    const turn = () => new Promise((r) => setImmediate(r));
    const userCalls = () => calls.filter((c) => c === 'user:u1').length;

    // A miss is looked up at once: that lookup is later than anything committed before it.
    expect((await store.getUser('u1'))?.id).toBe('u1');
    expect(reads).toHaveLength(0);
    expect(userCalls()).toBe(1);
    // The first read finds no count seen before: what is held is dropped and looked up again.
    const primed = store.getUser('u1');
    reads[0]!.answer();
    await primed;
    expect(userCalls()).toBe(2);

    // A hit made while a read is out does not take that read's answer: it was sent before the
    // hit, and may predate a change committed just before it (here: count 1).
    const second = store.getUser('u1');
    count = 1;
    const third = store.getUser('u1');
    expect(reads).toHaveLength(2);
    reads[1]!.answer(); // 0: unchanged, so the second is answered from memory
    await second;
    expect(userCalls()).toBe(2);
    await turn();
    expect(reads).toHaveLength(3); // the third's own read, sent once the second's was back
    // Three more hits while it is out share one further read.
    const waiting = [store.getUser('u1'), store.getUser('u1'), store.getUser('u1')];
    reads[2]!.answer(); // 1: changed, so everything held is dropped and the store asked again
    await third;
    expect(userCalls()).toBe(3);
    await turn();
    expect(reads).toHaveLength(4);
    reads[3]!.answer();
    await Promise.all(waiting);
    expect(userCalls()).toBe(3);

    // A failed read: the store answers, and nothing held before is trusted after it.
    const failed = store.getUser('u1');
    reads[4]!.fail();
    expect((await failed)?.id).toBe('u1');
    expect(userCalls()).toBe(4);
    await store.getUser('u1'); // a miss again
    expect(userCalls()).toBe(5);
    expect(reads).toHaveLength(5);
    // A read that never answers: after the timeout the store answers, and a later hit is not held
    // behind it: it sends a read of its own.
    expect((await store.getUser('u1'))?.id).toBe('u1');
    expect(userCalls()).toBe(6);
    expect(reads).toHaveLength(6);
    await store.getUser('u1'); // dropped with the timeout: a miss
    const next = store.getUser('u1');
    expect(reads).toHaveLength(7);
    reads[6]!.answer();
    expect((await next)?.id).toBe('u1');
    expect(userCalls()).toBe(7);
  });
});
