/**
 * Small helpers for the server's security tests: creating users and keys over HTTP, reading the
 * SQLite file directly, streaming raw request bodies, and hand-building JWTs.
 */
import http from 'node:http';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { call } from './server.js';

export type Role = 'admin' | 'user' | 'guest';

/** The eleven permissions of the seed, in its order. */
export const ALL_PERMISSIONS = [
  'read_models',
  'write_models',
  'delete_models',
  'run_inference',
  'manage_cache',
  'read_metrics',
  'write_config',
  'manage_users',
  'view_audit_logs',
  'use_streaming',
  'manage_queue',
] as const;

export const ROLE_PERMISSIONS: Record<Role, readonly string[]> = {
  admin: ALL_PERMISSIONS,
  user: ['read_models', 'run_inference', 'use_streaming', 'read_metrics'],
  guest: ['read_models', 'run_inference'],
};

export interface Auth {
  token?: string;
  apiKey?: string;
}

/** POST /api/v1/users as `auth`; throws unless 201. */
export async function createUser(
  baseUrl: string,
  auth: Auth,
  user: { username: string; password: string; role?: Role },
): Promise<{ id: string; username: string; role: Role; permissions: string[]; disabled: boolean }> {
  const res = await call(baseUrl, 'POST', '/api/v1/users', { ...auth, body: user });
  if (res.status !== 201) throw new Error(`createUser failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** POST /api/v1/auth/api-keys as `auth`; throws unless 201. */
export async function createApiKey(
  baseUrl: string,
  auth: Auth,
  request: { name: string; permissions: string[]; expires_in_days?: number; rate_limit_per_minute?: number },
): Promise<{ id: string; key: string; prefix: string; user_id: string; permissions: string[]; rate_limit_per_minute: number | null; expires_at: string | null; last_used_at: string | null }> {
  const res = await call(baseUrl, 'POST', '/api/v1/auth/api-keys', { ...auth, body: request });
  if (res.status !== 201) throw new Error(`createApiKey failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** The SQLite file of a test server's data dir, opened directly (the server keeps its own handle). */
export function openDb(dataDir: string): DatabaseSync {
  const db = new DatabaseSync(path.join(dataDir, 'inferno.db'));
  db.exec('PRAGMA busy_timeout = 5000;');
  return db;
}

/** Every row of every table, as JSON text: for "this secret is stored nowhere" checks. */
export function dumpDatabase(dataDir: string): string {
  const db = openDb(dataDir);
  try {
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name);
    const dump: Record<string, unknown[]> = {};
    for (const table of tables) dump[table] = db.prepare(`SELECT * FROM "${table}"`).all();
    return JSON.stringify(dump);
  } finally {
    db.close();
  }
}

export const base64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** A JWT put together by hand: header and payload as given, signature as given (default none). */
export function handMadeJwt(header: Record<string, unknown>, payload: Record<string, unknown>, signature = ''): string {
  return `${base64url(header)}.${base64url(payload)}.${signature}`;
}

/** Decodes a JWT's payload without verifying it. */
export function jwtPayload(token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8'));
}

export interface StreamedResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: any;
  /** Body bytes the client had written when the response headers arrived. */
  bytesSentBeforeResponse: number;
  /** Body bytes the client would have sent in all. */
  bytesOffered: number;
}

/**
 * Sends a body in chunks with `Transfer-Encoding: chunked` (no Content-Length), pausing between
 * chunks, and stops writing as soon as the server answers.
 */
export function streamRequest(
  url: string,
  options: { method: string; headers?: Record<string, string>; chunk: Buffer; chunks: number; delayMs?: number },
): Promise<StreamedResponse> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    let sent = 0;
    let answered = false;
    const req = http.request(
      { host: target.hostname, port: target.port, path: target.pathname + target.search, method: options.method, headers: options.headers },
      (res) => {
        answered = true;
        const sentAtResponse = sent;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = text ? JSON.parse(text) : undefined;
          } catch {
            // keep text
          }
          req.destroy();
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            body,
            bytesSentBeforeResponse: sentAtResponse,
            bytesOffered: options.chunk.length * options.chunks,
          });
        });
      },
    );
    // After the answer the server may close the socket while we are still writing: not an error here.
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    req.setHeader('Transfer-Encoding', 'chunked');
    req.flushHeaders();
    let i = 0;
    const writeNext = () => {
      if (answered || req.destroyed) return;
      if (i >= options.chunks) {
        req.end();
        return;
      }
      i++;
      req.write(options.chunk, () => {
        sent += options.chunk.length;
        setTimeout(writeNext, options.delayMs ?? 2);
      });
    };
    writeNext();
  });
}

/** Polls until `check` returns a value (not undefined), or throws after `timeoutMs`. */
export async function waitFor<T>(check: () => T | undefined, timeoutMs = 2_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
