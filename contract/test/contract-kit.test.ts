import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';
import { waitForReady } from '../../test/helpers/api-checks.js';
import { formatReport } from '../src/report.js';
import { runContract, type ContractReport, type OperationResult } from '../src/runner.js';
import { isSecured, loadSpec } from '../src/spec.js';
import { editJson, startBrokenProxy, type ProxiedAnswer } from './broken-proxy.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 100000 } });
  await waitForReady(server.url);
});
afterAll(() => server?.close());

const admin = () => ({ username: 'admin', password: server.adminPassword });
const operation = (report: ContractReport, id: string): OperationResult => {
  const found = report.operations.find((o) => o.id === id);
  if (!found) throw new Error(`no ${id} in the report`);
  return found;
};
const firstFailure = (op: OperationResult) => op.checks.find((c) => c.outcome === 'fail');

/** Runs the kit through a proxy that breaks answers with `tamper`. */
async function throughBrokenProxy(tamper: (answer: ProxiedAnswer) => void, only: string[]): Promise<ContractReport> {
  const proxy = await startBrokenProxy(server.url, tamper);
  try {
    return await runContract({ baseUrl: proxy.url, ...admin(), only });
  } finally {
    await proxy.close();
  }
}

describe('the contract kit against our server', () => {
  it('passes every operation of the spec, and leaves nothing behind', async () => {
    const report = await runContract({ baseUrl: server.url, ...admin() });
    const text = formatReport(report, 'text');
    expect(report.summary.failed, text).toBe(0);
    expect(report.summary.skipped, text).toBe(0);
    // Every operation of the spec, read at run time, is in the report.
    const spec = loadSpec();
    expect(report.operations.map((o) => o.id).sort()).toEqual(spec.operations.map((o) => o.id).sort());
    expect(text).toContain(`contract: ${spec.operations.length} operations, ${spec.operations.length} passed, 0 failed, 0 skipped`);
    // Each secured operation was checked without credentials, and (with x-permissions) with too few.
    for (const op of spec.operations.filter(isSecured)) {
      const checks = operation(report, op.id).checks;
      expect(checks.find((c) => c.check === 'no credentials: 401')?.outcome, op.id).toBe('pass');
      if (op.permissions?.length || op.permissionsAny?.length) expect(checks.find((c) => c.check === 'lacking the permission: 403')?.outcome, op.id).toBe('pass');
    }
    expect(operation(report, 'createInference').checks.find((c) => c.check === 'streamed: server-sent events')?.outcome).toBe('pass');
    expect(operation(report, 'createInference').checks.find((c) => c.check === 'streaming without its permission: 403')?.outcome).toBe('pass');
    expect(operation(report, 'createUser').checks.filter((c) => c.check.startsWith('invalid: ')).length).toBeGreaterThan(5);
    expect(report.summary.cleanupFailed).toBe(0);

    // No litter: the run's users, keys and models are gone.
    const token = await login(server.url);
    const users = await call(server.url, 'GET', '/api/v1/users', { token });
    expect(users.body.data.map((u: { username: string }) => u.username).filter((n: string) => n.startsWith('contract-'))).toEqual([]);
    const models = await call(server.url, 'GET', '/api/v1/models', { token });
    expect(models.body.data.map((m: { id: string }) => m.id)).toEqual(['demo-tiny']);
    const keys = await call(server.url, 'GET', '/api/v1/auth/api-keys', { token });
    expect(keys.body.data.filter((k: { name: string }) => k.name.startsWith('contract-'))).toEqual([]);
    // No secret in the report.
    expect(JSON.stringify(report)).not.toMatch(/inf_[A-Za-z0-9]{20,}|eyJ[\w-]+\.eyJ/);
    expect(JSON.stringify(report)).not.toContain(server.adminPassword);
  }, 120_000);

  it('with --only openai runs the /v1 operations alone, with an API key', async () => {
    const token = await login(server.url);
    const created = await call(server.url, 'POST', '/api/v1/auth/api-keys', { token, body: { name: 'contract-test-openai', permissions: ['read_models', 'run_inference', 'use_streaming'] } });
    const report = await runContract({ baseUrl: server.url, apiKey: created.body.key, only: ['openai'] });
    expect(report.operations.map((o) => o.path).every((p) => p.startsWith('/v1/')), JSON.stringify(report.operations.map((o) => o.path))).toBe(true);
    expect(report.summary.failed, formatReport(report, 'text')).toBe(0);
    expect(report.summary.passed).toBe(report.operations.length);
    // Without admin credentials no narrow key can be made: the 403 checks say so instead of passing.
    expect(operation(report, 'openaiListModels').checks.find((c) => c.check === 'lacking the permission: 403')).toMatchObject({ outcome: 'skip' });
    await call(server.url, 'DELETE', `/api/v1/auth/api-keys/${created.body.id}`, { token });
  }, 60_000);
});

describe('the contract kit without credentials', () => {
  it('checks the public operations and the 401s, and says why the rest is skipped', async () => {
    const report = await runContract({ baseUrl: server.url, only: ['health', 'models'] });
    expect(report.summary.failed, formatReport(report, 'text')).toBe(0);
    expect(operation(report, 'getHealth').verdict).toBe('passed');
    const list = operation(report, 'listModels');
    expect(list.checks.find((c) => c.check === 'no credentials: 401')?.outcome).toBe('pass');
    expect(list.checks.find((c) => c.check === 'with credentials')).toMatchObject({ outcome: 'skip', reason: expect.stringContaining('--api-key') });
    const json = JSON.parse(formatReport(report, 'json'));
    expect(json.summary).toEqual(report.summary);
  }, 60_000);
});

describe('the contract kit against broken servers', () => {
  it('names a dropped rate-limit header', async () => {
    const report = await throughBrokenProxy((a) => {
      if (a.method === 'GET' && a.path === '/api/v1/models' && a.status === 200) delete a.headers['x-ratelimit-remaining'];
    }, ['models']);
    const op = operation(report, 'listModels');
    expect(op.verdict).toBe('failed');
    expect(firstFailure(op)).toMatchObject({ expected: 'header X-RateLimit-Remaining (required on 200)', got: 'no such header' });
    expect(firstFailure(op)?.request).toMatchObject({ method: 'GET', path: '/api/v1/models' });
    expect(operation(report, 'getModel').verdict).toBe('passed');
    expect(formatReport(report, 'text')).toMatch(/FAIL {2}listModels +GET \/api\/v1\/models/);

    // For a server that does not promise the header, it can be left out of the checks.
    const proxy = await startBrokenProxy(server.url, (a) => void delete a.headers['x-ratelimit-remaining']);
    try {
      const lenient = await runContract({ baseUrl: proxy.url, ...admin(), only: ['listModels'], ignoreHeaders: ['X-RateLimit-*'], rateLimitProbe: false });
      expect(operation(lenient, 'listModels').verdict, formatReport(lenient, 'text')).toBe('passed');
    } finally {
      await proxy.close();
    }
  }, 60_000);

  it('names a route that answers 500', async () => {
    const report = await throughBrokenProxy((a) => {
      if (a.method === 'GET' && a.path === '/api/v1/cache' && a.status === 200) {
        a.status = 500;
        a.body = Buffer.from(JSON.stringify({ error: { code: 'INTERNAL_ERROR', message: 'Internal error', details: null } }));
      }
    }, ['cache']);
    const op = operation(report, 'getCacheStats');
    expect(op.verdict).toBe('failed');
    expect(op.checks.find((c) => c.check === 'a plausible request: 2xx')).toMatchObject({ outcome: 'fail', expected: 'status 200' });
    expect(firstFailure(op)?.got).toMatch(/^500 /);
    expect(operation(report, 'clearCache').verdict).toBe('passed');
  }, 60_000);

  it("names a field whose type changed, and where", async () => {
    const report = await throughBrokenProxy((a) => {
      if (a.method === 'GET' && /^\/api\/v1\/models\/[^/]+$/.test(a.path) && a.status === 200) editJson(a, (m) => void (m.size_bytes = String(m.size_bytes)));
    }, ['models']);
    const op = operation(report, 'getModel');
    expect(op.verdict).toBe('failed');
    expect(firstFailure(op)).toMatchObject({ expected: 'a body matching the documented schema' });
    expect(firstFailure(op)?.got).toContain('/size_bytes must be integer');
    expect(operation(report, 'listModels').verdict).toBe('passed');
  }, 60_000);

  it('names an invalid body that was accepted with 200', async () => {
    const report = await throughBrokenProxy((a) => {
      if (a.method === 'POST' && a.path === '/api/v1/embeddings' && a.status === 400) {
        a.status = 200;
        a.headers['content-type'] = 'application/json';
        a.body = Buffer.from(JSON.stringify({ object: 'list', model: 'demo-tiny', data: [], usage: { prompt_tokens: 0, total_tokens: 0 } }));
      }
    }, ['createEmbeddings']);
    const op = operation(report, 'createEmbeddings');
    expect(op.verdict).toBe('failed');
    const failure = firstFailure(op)!;
    expect(failure.check).toMatch(/^invalid: /);
    expect(failure).toMatchObject({ expected: 'status 400' });
    expect(failure.got).toMatch(/^200 /);
    expect(failure.request?.body).toBeTruthy();
  }, 60_000);

  it('names errors that forgot the error format', async () => {
    const report = await throughBrokenProxy((a) => {
      if (a.status === 401) editJson(a, (body) => ({ message: body.error?.message ?? 'Unauthorized' }));
    }, ['users']);
    const op = operation(report, 'listUsers');
    expect(op.verdict).toBe('failed');
    expect(firstFailure(op)).toMatchObject({ check: 'no credentials: 401', expected: 'a body matching the documented schema' });
    expect(firstFailure(op)?.got).toContain("must have required property 'error'");
    expect(report.summary.failed).toBe(report.operations.length);
  }, 60_000);

  it('names an error whose code does not go with its status', async () => {
    const report = await throughBrokenProxy((a) => {
      if (a.status === 403) editJson(a, (body) => void (body.error.code = 'NOT_FOUND'));
    }, ['getConfig']);
    const failure = firstFailure(operation(report, 'getConfig'));
    expect(failure).toMatchObject({ check: 'lacking the permission: 403', expected: 'error.code PERMISSION_DENIED (documented for 403)' });
    expect(failure?.got).toMatch(/^"NOT_FOUND"/);
  }, 60_000);

  it('names a stream event of an undocumented name', async () => {
    const report = await throughBrokenProxy((a) => {
      if (/event-stream/.test(a.headers['content-type'] ?? '')) a.body = Buffer.from(a.body.toString('utf8').replace(/event: token/g, 'event: chunk'));
    }, ['createInference']);
    expect(firstFailure(operation(report, 'createInference'))).toMatchObject({ expected: 'events named token, done, error', got: 'event 0 named "chunk"' });
  }, 60_000);

  it('names a stream that ends before its documented last event', async () => {
    const report = await throughBrokenProxy((a) => {
      if (a.path === '/api/v1/inference' && /event-stream/.test(a.headers['content-type'] ?? '')) {
        a.body = Buffer.from(a.body.toString('utf8').replace(/event: done\n[^\n]*\n\n/, ''));
      }
    }, ['createInference']);
    const op = operation(report, 'createInference');
    expect(op.verdict).toBe('failed');
    expect(firstFailure(op)).toMatchObject({ check: 'streamed: server-sent events', expected: 'the stream to end with "event: done"' });
  }, 60_000);
});

describe('the contract kit provoking a 429', () => {
  /** A fresh server (a fresh window) with a low limit, so the probe is short. */
  async function withLimitedServer(body: (limited: TestServer) => Promise<void>) {
    const limited = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 40 } });
    try {
      await waitForReady(limited.url);
      await body(limited);
    } finally {
      await limited.close();
    }
  }

  it('checks the documented 429: Retry-After, the other headers, the error format', () =>
    withLimitedServer(async (limited) => {
      const report = await runContract({ baseUrl: limited.url, username: 'admin', password: limited.adminPassword, only: ['metrics'] });
      expect(operation(report, 'getMetrics').checks.find((c) => c.check === 'rate limited: 429')).toMatchObject({ outcome: 'pass' });
      expect(report.summary.failed, formatReport(report, 'text')).toBe(0);
    }), 60_000);

  it('names a server whose 429 has no Retry-After', () =>
    withLimitedServer(async (limited) => {
      const proxy = await startBrokenProxy(limited.url, (a) => {
        if (a.status === 429) delete a.headers['retry-after'];
      });
      try {
        const report = await runContract({ baseUrl: proxy.url, username: 'admin', password: limited.adminPassword, only: ['metrics'] });
        const failure = operation(report, 'getMetrics').checks.find((c) => c.check === 'rate limited: 429');
        expect(failure).toMatchObject({ outcome: 'fail', expected: 'header Retry-After (required on 429)', got: 'no such header' });
      } finally {
        await proxy.close();
      }
    }), 60_000);
});

describe('the contract CLI', () => {
  const cli = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'contract/src/cli.ts', ...args], { cwd: ROOT, env: { ...process.env, INFERNO_API_KEY: '', INFERNO_PASSWORD: '' } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });

  it('exits 2 for bad usage, with the reason and the usage', async () => {
    for (const args of [['--report', 'yaml'], ['--bogus'], ['--base-url', server.url, '--only', 'no-such-tag'], ['--base-url', server.url, '--username', 'admin'], ['--base-url', 'ftp://x']]) {
      const result = await cli(args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toContain('Usage: npm run contract');
    }
  }, 60_000);

  it('exits 0 when everything holds and 1 when something fails, with the summary line', async () => {
    const ok = await cli(['--base-url', server.url, '--username', 'admin', '--password', server.adminPassword, '--only', 'health,cache']);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toContain('contract: 4 operations, 4 passed, 0 failed, 0 skipped');
    expect(ok.stdout + ok.stderr).not.toContain(server.adminPassword);

    const proxy = await startBrokenProxy(server.url, (a) => {
      if (a.path === '/api/v1/cache' && a.method === 'GET') a.status = 503;
    });
    try {
      const failed = await cli(['--base-url', proxy.url, '--username', 'admin', '--password', server.adminPassword, '--only', 'cache', '--report', 'junit']);
      expect(failed.code, failed.stdout + failed.stderr).toBe(1);
      expect(failed.stdout).toContain('<testsuites name="contract" tests="2" failures="1"');
      expect(failed.stdout).toMatch(/<testcase classname="contract.cache" name="getCacheStats GET \/api\/v1\/cache">\s*<failure message="/);
    } finally {
      await proxy.close();
    }
  }, 60_000);
});

describe('the spec says what each operation needs', () => {
  it('names the permissions of every secured operation (x-permissions or x-permissions-any) from the eleven', () => {
    const spec = loadSpec();
    const permissions: string[] = spec.document.components.schemas.Permission.enum;
    for (const op of spec.operations.filter(isSecured)) {
      const named = op.permissions ?? op.permissionsAny;
      expect(named, `${op.id} has no x-permissions`).toBeDefined();
      for (const p of [...named!, ...(op.streamPermissions ?? [])]) expect(permissions, op.id).toContain(p);
    }
  });
});
