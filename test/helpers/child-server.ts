import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ADMIN_PASSWORD, JWT_SECRET } from './server.js';

const root = path.resolve(import.meta.dirname, '../..');
const tsx = path.join(root, 'node_modules/.bin/tsx');
const cli = path.join(root, 'server/src/cli.ts');
// The project's Node 24 first on PATH, as npm scripts have it.
const PATH = `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH}`;

export interface ChildServer {
  url: string;
  process: ChildProcess;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>;
}

/** A fresh temp dir holding `data/` and `models/`. */
export function tempRoot(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'inferno-child-'));
}

/** Environment for the CLI: the test server's settings, Node 24 on PATH, no stray INFERNO_* from the caller. */
export function cliEnv(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('INFERNO_')));
  return {
    ...env,
    PATH,
    INFERNO_HOST: '127.0.0.1',
    INFERNO_PORT: '0',
    INFERNO_DATA_DIR: path.join(dir, 'data'),
    INFERNO_MODELS_DIR: path.join(dir, 'models'),
    INFERNO_ADMIN_PASSWORD: ADMIN_PASSWORD,
    INFERNO_JWT_SECRET: JWT_SECRET,
    ...extra,
  };
}

/** Runs `inferno-server <args>` to its end: exit code and output. */
export function runCli(dir: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(tsx, [cli, ...args], { cwd: dir, env: cliEnv(dir, env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Starts `inferno-server serve` as its own process and waits until it listens. With `group`, it
 * runs in a process group of its own, so that `killGroup` reaches the server itself: tsx runs the
 * server in a child process and relays SIGTERM and SIGINT to it, but nothing relays SIGKILL.
 */
export function spawnServer(dir: string, options: { env?: Record<string, string>; args?: string[]; group?: boolean } = {}): Promise<ChildServer> {
  const child = spawn(tsx, [cli, 'serve', ...(options.args ?? [])], {
    cwd: dir,
    env: cliEnv(dir, options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.group === true,
  });
  let output = '';
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk;
      const match = /Inferno listening on (\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ url: match[1]!, process: child, output: () => output, exited });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${output}`));
    });
  });
}

/** Sends `signal` to a server started with `group: true` and everything it started (tsx's child: the server). */
export function killGroup(server: ChildServer, signal: NodeJS.Signals): void {
  try {
    process.kill(-server.process.pid!, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error; // already gone
  }
}
