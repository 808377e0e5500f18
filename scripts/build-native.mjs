// Builds the engine's native addon, server/native/*.cc (a persistent ggml threadpool for
// node-llama-cpp contexts, and a decode step with its sampling in one worker hop), into
// server/native/build/engine.node, against the headers of the installed node-llama-cpp
// (its addon's own headers, llama.cpp's from the source bundle it ships) and N-API. Run by
// `npm install`/`npm ci` (postinstall) and by `npm run build:native`.
//
// Optional: without g++ (or git) it warns and exits 0, and the server runs as before, with ggml
// starting a threadpool for every decode when a context has more than one thread.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'package.json'));
const sources = ['addon.cc', 'threadpool.cc', 'step.cc'].map((name) => path.join(root, 'server/native', name));
const out = path.join(root, 'server/native/build/engine.node');
const stamp = `${out}.stamp`;
const strict = process.argv.includes('--strict');

/** An installed package's folder (found from its entry point: some packages export no package.json). */
function packageDir(name) {
  let dir = path.dirname(require.resolve(name));
  while (!existsSync(path.join(dir, 'package.json')) || JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).name !== name) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`${name} is not installed`);
    dir = parent;
  }
  return dir;
}

function run(command, args, options = {}) {
  return execFileSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', ...options });
}

try {
  const nlcDir = packageDir('node-llama-cpp');
  const nlcVersion = JSON.parse(readFileSync(path.join(nlcDir, 'package.json'), 'utf8')).version;
  // The sources' and this script's hash: an edit that keeps a source's length rebuilds it too.
  const digest = createHash('sha256');
  for (const file of [...sources, path.join(root, 'server/native/loaded-addon.h'), fileURLToPath(import.meta.url)]) digest.update(readFileSync(file));
  const hash = digest.digest('hex').slice(0, 16);
  const key = `${nlcVersion} ${hash} ${process.platform}-${process.arch}`;
  if (existsSync(out) && existsSync(stamp) && readFileSync(stamp, 'utf8') === key && !process.argv.includes('--force')) {
    console.log(`native engine addon is up to date (node-llama-cpp ${nlcVersion})`);
    process.exit(0);
  }
  // A stale build (another node-llama-cpp, another source) must not stay to be loaded if this one
  // fails: it would read the context binding with another version's layout.
  rmSync(out, { force: true });
  rmSync(stamp, { force: true });
  if (process.platform !== 'linux') throw new Error(`not built on ${process.platform}: it is written for Linux`);
  const headers = mkdtempSync(path.join(tmpdir(), 'inferno-native-'));
  try {
    // llama.cpp's headers, from the source bundle node-llama-cpp ships (the release its binaries are).
    const bundle = path.join(nlcDir, 'llama/gitRelease.bundle');
    run('git', ['init', '-q', headers]);
    run('git', ['-C', headers, 'fetch', '-q', bundle, 'HEAD']);
    run('git', ['-C', headers, 'checkout', '-q', 'FETCH_HEAD', '--', 'include', 'ggml/include']);
    const addonApi = require('node-addon-api').include_dir;
    const napiHeaders = path.join(packageDir('node-api-headers'), 'include');
    mkdirSync(path.dirname(out), { recursive: true });
    const started = Date.now();
    run('g++', [
      '-shared', '-fPIC', '-O2', '-std=c++17', '-fexceptions', '-DNAPI_VERSION=7', '-DNAPI_CPP_EXCEPTIONS',
      '-I', path.join(nlcDir, 'llama/addon'), '-I', path.join(headers, 'include'), '-I', path.join(headers, 'ggml/include'),
      '-I', path.resolve(root, addonApi), '-I', napiHeaders,
      ...sources, '-o', out,
    ]);
    writeFileSync(stamp, key);
    console.log(`built ${path.relative(root, out)} for node-llama-cpp ${nlcVersion} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    rmSync(headers, { recursive: true, force: true });
  }
} catch (error) {
  const detail = error && typeof error === 'object' && 'stderr' in error && error.stderr ? String(error.stderr).slice(0, 2000) : String(error?.message ?? error);
  console.warn(`warning: the native engine addon was not built (contexts with more than one thread run slower, and each step samples in a worker hop of its own): ${detail}`);
  process.exit(strict ? 1 : 0);
}
