// The package as users get it: `npm pack -w sdk`, unpacked into a scratch project, then
// required from CommonJS and imported from ESM on the system Node (v20 here), and compiled by
// TypeScript consumers under moduleResolution bundler, node16 and nodenext (ESM and CJS files,
// exactOptionalPropertyTypes on); both builds loaded in one process share one error hierarchy
// for `instanceof`. The tarball carries a LICENSE, no source maps, and no
// dependencies: zod is an optional peer.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let scratch: string;
let project: string;
let packageDir: string;

/** The system Node (the one on PATH outside node_modules), which is v20 on this project's machines. */
function systemNode(): string {
  const candidates = ['/usr/bin/node', '/usr/local/bin/node', ...execFileSync('bash', ['-c', 'which -a node || true']).toString().split('\n')];
  for (const candidate of candidates) {
    if (!candidate || candidate.includes('node_modules')) continue;
    try {
      execFileSync(candidate, ['--version']);
      return candidate;
    } catch {
      // not there
    }
  }
  return process.execPath;
}

beforeAll(() => {
  scratch = mkdtempSync(path.join(os.tmpdir(), 'sdk-pack-'));
  const out = execFileSync('npm', ['pack', '-w', 'sdk', '--pack-destination', scratch, '--json'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const [{ filename }] = JSON.parse(out.toString()) as [{ filename: string }];
  project = path.join(scratch, 'consumer');
  packageDir = path.join(project, 'node_modules', '@inferno', 'sdk');
  mkdirSync(path.join(project, 'node_modules', '@inferno'), { recursive: true });
  execFileSync('tar', ['-xzf', path.join(scratch, path.basename(filename)), '-C', scratch]);
  cpSync(path.join(scratch, 'package'), packageDir, { recursive: true });
  // The optional peer, as a user who wants response validation installs it.
  symlinkSync(path.join(root, 'node_modules', 'zod'), path.join(project, 'node_modules', 'zod'));
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
}, 180_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)));
}

// Each script starts a tiny server, sends one call through the SDK and checks the error classes.
const SCRIPT = (load: string) => `
${load}
const http = require_('node:http');
const server = http.createServer((req, res) => {
  res.writeHead(req.url === '/api/v1/models' ? 200 : 404, { 'content-type': 'application/json', 'x-request-id': 'r1' });
  res.end(req.url === '/api/v1/models' ? '{"object":"list","data":[]}' : '{"error":{"code":"NOT_FOUND","message":"no","details":null}}');
});
server.listen(0, '127.0.0.1', async () => {
  const client = new sdk.InfernoClient({ baseUrl: 'http://127.0.0.1:' + server.address().port, apiKey: 'k', validateResponses: true, responseValidator: zod.responseValidator });
  const { data, requestId } = await client.models.list().withResponse();
  const error = await client.models.get('x').catch((e) => e);
  console.log(JSON.stringify({ node: process.version, data, requestId, notFound: error instanceof sdk.NotFoundError, base: error instanceof sdk.InfernoError, abort: new sdk.AbortError('r').name }));
  server.close();
});
`;

describe('the packed tarball', () => {
  it('holds the build, a LICENSE, no source maps and no dependencies', () => {
    const packed = files(packageDir);
    expect(packed).toContain('LICENSE');
    expect(packed).toContain('dist/esm/index.js');
    expect(packed).toContain('dist/cjs/index.js');
    expect(packed.filter((f) => f.endsWith('.map'))).toEqual([]);
    expect(readFileSync(path.join(packageDir, 'LICENSE'), 'utf8')).toMatch(/^MIT License/);
    const manifest = JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8'));
    expect(manifest.dependencies).toBeUndefined();
    expect(manifest.peerDependenciesMeta).toEqual({ zod: { optional: true } });
    expect(manifest.peerDependencies.zod).toMatch(/^\^/);
  });

  it.each([
    ['CommonJS', 'consumer.cjs', "const require_ = require; const sdk = require('@inferno/sdk'); const zod = require('@inferno/sdk/zod');"],
    [
      'ESM',
      'consumer.mjs',
      "import { createRequire } from 'node:module'; const require_ = createRequire(import.meta.url); import * as sdk from '@inferno/sdk'; import * as zod from '@inferno/sdk/zod';",
    ],
  ])('works from %s on the system Node', (_kind, file, load) => {
    writeFileSync(path.join(project, file), SCRIPT(load));
    const output = execFileSync(systemNode(), [file], { cwd: project, timeout: 30_000 }).toString();
    const result = JSON.parse(output.trim().split('\n').at(-1)!);
    expect(result).toMatchObject({ data: { object: 'list', data: [] }, requestId: 'r1', notFound: true, base: true, abort: 'AbortError' });
    expect(result.node).toMatch(/^v\d+\./);
  });

  it('keeps one error hierarchy when the CommonJS and the ESM build are both loaded (dual-package hazard)', () => {
    writeFileSync(
      path.join(project, 'dual.mjs'),
      `
import { createRequire } from 'node:module';
import http from 'node:http';
import * as esm from '@inferno/sdk';
const cjs = createRequire(import.meta.url)('@inferno/sdk');
const server = http.createServer((req, res) => {
  res.writeHead(404, { 'content-type': 'application/json', 'x-request-id': 'r2' });
  res.end('{"error":{"code":"NOT_FOUND","message":"no","details":null}}');
});
server.listen(0, '127.0.0.1', async () => {
  const client = new cjs.InfernoClient({ baseUrl: 'http://127.0.0.1:' + server.address().port, apiKey: 'k' });
  const fromCjs = await client.models.get('x').catch((e) => e);
  const fromEsm = new esm.TimeoutError('slow', 5);
  class Mine extends esm.NotFoundError {}
  console.log(JSON.stringify({
    twoCopies: esm.InfernoError !== cjs.InfernoError,
    cjsErrorIsEsm: [fromCjs instanceof esm.NotFoundError, fromCjs instanceof esm.APIError, fromCjs instanceof esm.InfernoError, fromCjs instanceof Error],
    cjsErrorIsNot: [fromCjs instanceof esm.ConnectionError, fromCjs instanceof esm.ConflictError, fromCjs instanceof Mine],
    esmErrorIsCjs: [fromEsm instanceof cjs.TimeoutError, fromEsm instanceof cjs.ConnectionError, fromEsm instanceof cjs.InfernoError],
    esmErrorIsNot: [fromEsm instanceof cjs.APIError, fromEsm instanceof cjs.AbortError],
    plain: [new Error('x') instanceof cjs.InfernoError, {} instanceof esm.InfernoError, null instanceof esm.APIError],
    requestId: fromCjs.requestId,
  }));
  server.close();
});
`,
    );
    const output = execFileSync(systemNode(), ['dual.mjs'], { cwd: project, timeout: 30_000 }).toString();
    expect(JSON.parse(output.trim().split('\n').at(-1)!)).toEqual({
      twoCopies: true,
      cjsErrorIsEsm: [true, true, true, true],
      cjsErrorIsNot: [false, false, false],
      esmErrorIsCjs: [true, true, true],
      esmErrorIsNot: [false, false],
      plain: [false, false, false],
      requestId: 'r2',
    });
  });

  it.each([
    ['bundler', 'ESNext', ['esm.ts']],
    ['node16', 'Node16', ['esm.mts', 'cjs.cts']],
    ['nodenext', 'NodeNext', ['esm.mts', 'cjs.cts']],
  ])('type-checks under moduleResolution %s', (resolution, module, sources) => {
    const dir = path.join(project, `ts-${resolution}`);
    mkdirSync(dir, { recursive: true });
    const body = `
const client = new InfernoClient({ baseUrl: 'http://127.0.0.1:8080', apiKey: 'k', timeout: undefined, rateLimit: { throttle: true, maxWait: undefined } });
export async function run(): Promise<void> {
  const { data, requestId } = await client.models.list().withResponse();
  const id: string = data.data[0]!.id;
  for await (const job of client.jobs.list({ limit: 10 })) console.log(job.id, id, requestId);
  const error: unknown = null;
  if (error instanceof InfernoError) console.log(error.requestId);
  void responseValidator;
  // @ts-expect-error prompt and messages are exclusive
  await client.inference.create({ model: 'm', prompt: 'p', messages: [{ role: 'user', content: 'c' }] });
  // @ts-expect-error one of them is needed
  await client.inference.create({ model: 'm' });
  // @ts-expect-error a job's requests are exclusive too
  await client.jobs.create({ requests: [{ model: 'm', prompt: 'p', messages: [{ role: 'user', content: 'c' }] }] });
  await client.jobs.create({ requests: [{ model: 'm', prompt: 'p' }, { model: 'm', messages: [{ role: 'user', content: 'c' }] }] });
}
`;
    const imports: Record<string, string> = {
      'esm.ts': "import { InfernoClient, InfernoError } from '@inferno/sdk';\nimport { responseValidator } from '@inferno/sdk/zod';\n",
      'esm.mts': "import { InfernoClient, InfernoError } from '@inferno/sdk';\nimport { responseValidator } from '@inferno/sdk/zod';\n",
      'cjs.cts': "import { InfernoClient, InfernoError } from '@inferno/sdk';\nimport { responseValidator } from '@inferno/sdk/zod';\n",
    };
    for (const source of sources) writeFileSync(path.join(dir, source), imports[source] + body);
    writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module,
          moduleResolution: resolution,
          target: 'ES2022',
          lib: ['ES2023', 'DOM', 'DOM.Iterable'],
          types: [],
          strict: true,
          exactOptionalPropertyTypes: true,
          noEmit: true,
          skipLibCheck: false,
        },
        files: sources,
      }),
    );
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    let output = '';
    try {
      execFileSync(process.execPath, [tsc, '-p', dir], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      output = String((error as { stdout?: Buffer }).stdout ?? error);
    }
    expect(output).toBe('');
  }, 60_000);
});
