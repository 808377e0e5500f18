/**
 * Shared pieces of the benchmarks: flags, statistics, a raw node-llama-cpp runner, an SSE client and
 * a server started as a child process (so its event loop is not the client's).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DemoFileType, DemoPresetName } from '../server/src/engine/demo-model.js';
import { getLlama, LlamaChatSession, LlamaCompletion, LlamaLogLevel, resolveChatWrapper, type ChatWrapper, type Llama, type LlamaContextSequence, type LlamaModel } from 'node-llama-cpp';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The demo models the benchmarks run, by their `--model(s)` names. */
export const DEMO_MODELS: Record<string, { preset: DemoPresetName; fileType: DemoFileType }> = {
  tiny: { preset: 'tiny', fileType: 'f16' },
  'small-q8_0': { preset: 'small', fileType: 'q8_0' },
  'small-f16': { preset: 'small', fileType: 'f16' },
};

// ---- flags and numbers ----------------------------------------------------------------------------

/** `--name value` / `--name=value` / `--flag` into a map. */
export function parseFlags(argv: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]!);
    if (!match) throw new Error(`unexpected argument ${argv[i]}`);
    const next = argv[i + 1];
    if (match[2] !== undefined) flags.set(match[1]!, match[2]);
    else if (next !== undefined && !next.startsWith('--')) flags.set(match[1]!, argv[++i]!);
    else flags.set(match[1]!, 'true');
  }
  return flags;
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export const fmt = (value: number, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : String(value));

/** A fixed-width text table. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => '| ' + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ') + ' |';
  return [line(cells[0]!), '|' + widths.map((w, i) => (i === 0 ? '-'.repeat(w + 1) + '-' : '-'.repeat(w + 1) + ':')).join('|') + '|', ...cells.slice(1).map(line)].join('\n');
}

export function machineLine(): string {
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  return `${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), node ${process.version}, load average ${load}`;
}

export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

// ---- raw node-llama-cpp -----------------------------------------------------------------------------

export function startLlama(): Promise<Llama> {
  // As the server does (server/src/engine/engine.ts start()): CPU, never build, warnings only.
  return getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: LlamaLogLevel.error });
}

export interface RunResult {
  tokens: number;
  text: string;
  /** From the call to the first text chunk. */
  ttftMs: number;
  /** From the call to the end. */
  totalMs: number;
  /** Tokens after the first, per second of decoding (first chunk to end). */
  decodeTps: number;
  /** Tokens per second of the whole call. */
  e2eTps: number;
  /** Through the server: the `timings` of its `done` event (the server's own view). */
  serverTimings?: { queued_ms: number; prompt_ms: number; generation_ms: number; total_ms: number; tokens_per_second: number };
}

/** A stream's figures from its token count, text and times (first text, end). */
export function runResult(tokens: number, text: string, started: number, firstAt: number | undefined, ended: number): RunResult {
  const first = firstAt ?? ended;
  return {
    tokens,
    text,
    ttftMs: first - started,
    totalMs: ended - started,
    decodeTps: ended > first && tokens > 1 ? ((tokens - 1) * 1000) / (ended - first) : Number.NaN,
    e2eTps: (tokens * 1000) / (ended - started),
  };
}

export interface GenerationSettings {
  prompt: string;
  maxTokens: number;
  temperature: number;
  seed: number;
}

/** node-llama-cpp's generation callbacks counting tokens and timing the first text, and the result once it has ended. */
function counted() {
  const started = performance.now();
  let tokens = 0;
  let firstAt: number | undefined;
  let text = '';
  return {
    callbacks: {
      onToken: (t: readonly unknown[]) => void (tokens += t.length),
      onTextChunk: (chunk: string) => {
        firstAt ??= performance.now();
        text += chunk;
      },
    },
    result: () => runResult(tokens, text, started, firstAt, performance.now()),
  };
}

/**
 * One completion on a sequence with node-llama-cpp alone, as its documentation has it: clear the
 * sequence, a fresh LlamaCompletion, stream text chunks. Greedy decoding by default, so the server
 * and raw runs produce the same tokens and neither stops early.
 */
export async function rawGenerate(sequence: LlamaContextSequence, settings: GenerationSettings, signal?: AbortSignal): Promise<RunResult> {
  const run = counted();
  await sequence.clearHistory();
  const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
  try {
    await completion.generateCompletion(settings.prompt, { maxTokens: settings.maxTokens, temperature: settings.temperature, seed: settings.seed, signal, stopOnAbortSignal: true, ...run.callbacks });
  } finally {
    completion.dispose({ disposeSequence: false });
  }
  return run.result();
}

const chatWrappers = new WeakMap<LlamaModel, ChatWrapper>();
/**
 * The chat template node-llama-cpp resolves for a model (as the server does), once per model:
 * resolving it renders the model's template many times over, a few hundred ms.
 */
export function chatWrapperOf(model: LlamaModel): ChatWrapper {
  let wrapper = chatWrappers.get(model);
  if (!wrapper) chatWrappers.set(model, (wrapper = resolveChatWrapper(model)));
  return wrapper;
}

/**
 * One chat reply on a sequence with node-llama-cpp alone: `LlamaChatSession` on a cleared sequence,
 * in the model's chat template, the prompt as the one user message (the whole history: no system
 * prompt, as a request without one has none).
 */
export async function rawChat(sequence: LlamaContextSequence, settings: GenerationSettings): Promise<RunResult> {
  const run = counted();
  await sequence.clearHistory();
  const session = new LlamaChatSession({ contextSequence: sequence, autoDisposeSequence: false, chatWrapper: chatWrapperOf(sequence.model) });
  session.setChatHistory([]); // (a session starts with node-llama-cpp's default system prompt)
  try {
    await session.prompt(settings.prompt, { maxTokens: settings.maxTokens, temperature: settings.temperature, seed: settings.seed, ...run.callbacks });
  } finally {
    session.dispose({ disposeSequence: false });
  }
  return run.result();
}

// ---- the server as a child process ------------------------------------------------------------------

export interface BenchServer {
  url: string;
  token: string;
  /** Where the server runs: its own process, or this one. */
  where: string;
  /** The server's process id, when it runs in a process of its own. */
  pid?: number;
  stop(): Promise<void>;
}

export const ADMIN_PASSWORD = 'bench-admin-password-1';

/**
 * Starts `server/src/cli.ts serve` in its own Node process (through tsx) on an ephemeral port,
 * waits until /health/ready, logs in as admin. `settings` are `--set` overrides; `root` is the
 * checkout whose server runs (default this one; another version for a before/after comparison).
 */
export async function startChildServer(options: { modelsDir: string; settings?: Record<string, string | number | boolean>; root?: string }): Promise<BenchServer> {
  const data = tempDir('inferno-bench-data-');
  const root = options.root ?? REPO_ROOT;
  const args = ['--import', 'tsx', path.join(root, 'server/src/cli.ts'), 'serve', '--port', '0', '--data-dir', data.dir, '--models-dir', options.modelsDir];
  for (const [key, value] of Object.entries({ 'rate_limit.requests_per_minute': 1_000_000, 'logging.level': 'warn', ...options.settings })) {
    args.push('--set', `${key}=${value}`);
  }
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, INFERNO_ADMIN_PASSWORD: ADMIN_PASSWORD, INFERNO_JWT_SECRET: 'bench-jwt-secret-that-is-at-least-32-bytes-long' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + String(d)).slice(-4000)));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += String(d);
      const match = /Inferno listening on (\S+)/.exec(out);
      if (match) {
        child.stdout!.off('data', onData);
        child.stdout!.resume(); // keep draining (log lines)
        resolve(match[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
  });
  const deadline = Date.now() + 60_000;
  while ((await fetch(`${url}/health/ready`).then((r) => r.status, () => 0)) !== 200) {
    if (Date.now() > deadline) throw new Error('server never became ready');
    await new Promise((r) => setTimeout(r, 50));
  }
  const login = await fetch(`${url}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
  });
  const { token } = (await login.json()) as { token: string };
  return {
    url,
    token,
    where: `child process ${child.pid}`,
    pid: child.pid,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      data.remove();
    },
  };
}

/** The server in this process (its JS shares the client's event loop): `startServer` as the tests do. */
export async function startInProcessServer(options: { modelsDir: string; settings?: Record<string, string | number | boolean> }): Promise<BenchServer> {
  const { loadConfig } = await import('../server/src/config.js');
  const { startServer } = await import('../server/src/server.js');
  const { Writable } = await import('node:stream');
  const data = tempDir('inferno-bench-data-');
  const argv = Object.entries({ 'rate_limit.requests_per_minute': 1_000_000, 'logging.level': 'warn', ...options.settings }).flatMap(([k, v]) => ['--set', `${k}=${v}`]);
  const config = loadConfig({
    env: { INFERNO_HOST: '127.0.0.1', INFERNO_PORT: '0', INFERNO_DATA_DIR: data.dir, INFERNO_MODELS_DIR: options.modelsDir, INFERNO_ADMIN_PASSWORD: ADMIN_PASSWORD, INFERNO_JWT_SECRET: 'bench-jwt-secret-that-is-at-least-32-bytes-long' },
    argv,
    cwd: data.dir,
  });
  const sink = new Writable({ write: (_c, _e, done) => done() });
  const server = await startServer(config, { logDestination: sink, announce: () => {} });
  while ((await fetch(`${server.url}/health/ready`).then((r) => r.status, () => 0)) !== 200) await new Promise((r) => setTimeout(r, 50));
  const login = await fetch(`${server.url}/api/v1/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }) });
  const { token } = (await login.json()) as { token: string };
  return {
    url: server.url,
    token,
    where: `this process (${process.pid})`,
    pid: process.pid,
    async stop() {
      await server.close();
      data.remove();
    },
  };
}

/** How many requests `fetchOnce` sent a second time (printed with the results). */
export const resent = { count: 0 };

/**
 * `fetch`, sent once more when it failed with the connection closed or reset before any answer
 * (seen once: "other side closed" on a kept-alive connection, likely one a server closed after its
 * idle timeout while this process was busy). A server that died stays dead: the second try fails.
 * `started`: when the try that was answered went out, so its timings leave out the failed one.
 */
export async function fetchOnce(url: string, init: RequestInit): Promise<{ response: Response; started: number }> {
  let started = performance.now();
  try {
    return { response: await fetch(url, init), started };
  } catch (error) {
    const code = (error as { cause?: { code?: string } }).cause?.code;
    if (code !== 'UND_ERR_SOCKET' && code !== 'ECONNRESET') throw error;
    resent.count++;
    started = performance.now();
    return { response: await fetch(url, init), started };
  }
}

/** One streamed generation over HTTP, timed from the client's side. */
export async function serverStream(server: { url: string; token: string }, model: string, settings: GenerationSettings): Promise<RunResult> {
  const { response, started } = await fetchOnce(`${server.url}/api/v1/inference`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, prompt: settings.prompt, max_tokens: settings.maxTokens, temperature: settings.temperature, seed: settings.seed, stream: true }),
  });
  if (response.status !== 200) throw new Error(`inference answered ${response.status}: ${await response.text()}`);
  let firstAt: number | undefined;
  let text = '';
  let tokens = 0;
  let serverTimings: RunResult['serverTimings'];
  await readSse(response, (data, event) => {
    if (event === 'token') {
      firstAt ??= performance.now();
      text += (JSON.parse(data) as { text: string }).text;
    } else if (event === 'done') {
      const parsed = JSON.parse(data) as { usage: { completion_tokens: number }; timings: NonNullable<RunResult['serverTimings']> };
      tokens = parsed.usage.completion_tokens;
      serverTimings = parsed.timings;
    } else if (event === 'error') {
      throw new Error(`stream error: ${data}`);
    }
  });
  return { ...runResult(tokens, text, started, firstAt, performance.now()), serverTimings };
}

/** Calls `onData` with each server-sent event's `data:` payload and its `event:` name, if any. */
export async function readSse(response: Response, onData: (data: string, event: string | undefined) => void): Promise<void> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = /^data: ?(.*)$/m.exec(block)?.[1];
      if (data !== undefined) onData(data, /^event: (.*)$/m.exec(block)?.[1]);
    }
  }
}

/** CPU seconds (user + system) a process (or one thread of it) has used so far, from /proc (Linux). */
export function cpuSeconds(pid: number, thread?: number): number {
  try {
    const stat = readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** A fresh API key for the bench's admin session (inference and model reads). */
export async function apiKeyOf(server: BenchServer): Promise<string> {
  const res = await fetch(`${server.url}/api/v1/auth/api-keys`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'bench', permissions: ['read_models', 'run_inference', 'use_streaming'] }),
  });
  if (res.status !== 201) throw new Error(`key creation answered ${res.status}`);
  return ((await res.json()) as { key: string }).key;
}
