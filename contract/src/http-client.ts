/**
 * Sends the kit's requests: one at a time, paced by the server's rate-limit headers (it waits
 * for the window to reset when none are left, and honours `Retry-After` on a 429 up to a cap),
 * and keeps a secret-free record of each request for the report.
 */
import { parseSse, type SseEvent } from './sse.js';

export type AuthKind = 'none' | 'jwt' | 'api-key' | 'bearer-api-key';

export interface Credentials {
  jwt?: string;
  apiKey?: string;
}

export interface OutgoingRequest {
  method: string;
  /** Path and query, e.g. `/api/v1/jobs?limit=1`. */
  path: string;
  auth: AuthKind;
  credentials?: Credentials;
  /** The header of the spec's API key scheme (for `auth: 'api-key'`). */
  apiKeyHeader?: string;
  json?: unknown;
  /** A raw body (malformed JSON, binary uploads); `contentType` says what it is. */
  raw?: string | Uint8Array<ArrayBuffer>;
  contentType?: string;
  /** Read the answer as server-sent events when it is `text/event-stream`. */
  stream?: boolean;
  /** Header parameters of the operation. */
  headers?: Record<string, string>;
}

/** What the report shows of a request: never a credential, and only the start of a body. */
export interface RequestRecord {
  method: string;
  path: string;
  auth: AuthKind;
  contentType?: string;
  body?: string;
}

export interface Exchange {
  request: RequestRecord;
  status: number;
  headers: Headers;
  contentType: string;
  text: string;
  /** The parsed body when it is JSON; undefined otherwise. */
  json?: unknown;
  jsonError?: string;
  events?: SseEvent[];
}

export interface ClientOptions {
  timeoutMs?: number;
  /** The longest a single rate-limit wait may be before the kit gives up on that request. */
  maxWaitMs?: number;
  log?: (line: string) => void;
}

export class HttpClient {
  readonly stats = { requests: 0, rateLimitWaits: 0, waitedMs: 0 };
  private pausedUntil = 0;

  constructor(
    readonly baseUrl: string,
    private readonly options: ClientOptions = {},
  ) {}

  async send(request: OutgoingRequest): Promise<Exchange> {
    for (let attempt = 0; ; attempt++) {
      await this.pace();
      const exchange = await this.once(request);
      if (exchange.status !== 429 || attempt >= 2) return exchange;
      const waitMs = retryAfterMs(exchange.headers);
      if (waitMs === undefined || waitMs > (this.options.maxWaitMs ?? 65_000)) return exchange;
      this.options.log?.(`rate limited: waiting ${Math.ceil(waitMs / 1000)} s (Retry-After)`);
      this.stats.rateLimitWaits++;
      await this.sleep(waitMs);
    }
  }

  /** One request as it is: no pacing, no retry after a 429 (for provoking one). */
  async sendUnpaced(request: OutgoingRequest): Promise<Exchange> {
    return this.once(request, false);
  }

  private async once(request: OutgoingRequest, pace = true): Promise<Exchange> {
    const headers: Record<string, string> = { Accept: request.stream ? 'text/event-stream' : 'application/json, */*', ...request.headers };
    const { credentials = {} } = request;
    if (request.auth === 'jwt' && credentials.jwt) headers.Authorization = `Bearer ${credentials.jwt}`;
    if (request.auth === 'api-key' && credentials.apiKey) headers[request.apiKeyHeader ?? 'X-API-Key'] = credentials.apiKey;
    if (request.auth === 'bearer-api-key' && credentials.apiKey) headers.Authorization = `Bearer ${credentials.apiKey}`;
    let body: string | Uint8Array<ArrayBuffer> | undefined;
    if (request.raw !== undefined) body = request.raw;
    else if (request.json !== undefined) body = JSON.stringify(request.json);
    const contentType = request.contentType ?? (request.json !== undefined ? 'application/json' : undefined);
    if (contentType && body !== undefined) headers['Content-Type'] = contentType;
    const record: RequestRecord = { method: request.method, path: request.path, auth: request.auth, ...(contentType && body !== undefined && { contentType }), ...(body !== undefined && { body: excerpt(body) }) };
    this.stats.requests++;
    const signal = AbortSignal.timeout(this.options.timeoutMs ?? 30_000);
    let response: Response;
    try {
      response = await fetch(new URL(request.path, this.baseUrl), { method: request.method, headers, body, signal, redirect: 'manual' });
    } catch (error) {
      throw new RequestFailure(record, `no answer: ${(error as Error).cause instanceof Error ? ((error as Error).cause as Error).message : (error as Error).message}`);
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      throw new RequestFailure(record, `the answer broke off: ${(error as Error).message}`);
    }
    if (pace) this.notePace(response.headers);
    const type = response.headers.get('content-type') ?? '';
    const exchange: Exchange = { request: record, status: response.status, headers: response.headers, contentType: type, text };
    if (/^text\/event-stream/i.test(type)) exchange.events = parseSse(text);
    else if (/json/i.test(type) || (text && /^[[{]/.test(text.trim()))) {
      try {
        exchange.json = JSON.parse(text);
      } catch (error) {
        exchange.jsonError = (error as Error).message;
      }
    }
    return exchange;
  }

  /** After an answer with no requests left in the window, the next request waits for its reset. */
  private notePace(headers: Headers) {
    const remaining = Number(headers.get('x-ratelimit-remaining'));
    const reset = Number(headers.get('x-ratelimit-reset'));
    if (headers.get('x-ratelimit-remaining') !== null && remaining <= 0 && Number.isFinite(reset) && reset > 0) {
      this.pausedUntil = Math.min(reset * 1000 + 250, Date.now() + (this.options.maxWaitMs ?? 65_000));
    }
  }

  private async pace() {
    const wait = this.pausedUntil - Date.now();
    if (wait > 0) {
      this.options.log?.(`rate limit window used up: waiting ${Math.ceil(wait / 1000)} s for its reset`);
      this.stats.rateLimitWaits++;
      await this.sleep(wait);
    }
  }

  private async sleep(ms: number) {
    this.stats.waitedMs += ms;
    await new Promise((r) => setTimeout(r, ms));
  }
}

export class RequestFailure extends Error {
  constructor(
    readonly request: RequestRecord,
    message: string,
  ) {
    super(message);
  }
}

function retryAfterMs(headers: Headers): number | undefined {
  const value = headers.get('retry-after');
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds) * 1000 + 100;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

const SECRET_FIELD = /^(password|token|key|secret|api_key|authorization)$/i;

/** The start of a body, with secrets masked: password/token/key fields, API keys and JWTs. */
export function excerpt(body: string | Uint8Array, max = 200): string {
  if (typeof body !== 'string') return `<${body.byteLength} bytes>`;
  let text = body;
  try {
    text = JSON.stringify(JSON.parse(body), (k, v) => (SECRET_FIELD.test(k) && typeof v === 'string' ? '***' : v));
  } catch {
    // not JSON (a deliberately malformed body): shown as it is, masked below
  }
  text = maskSecrets(text);
  return text.length > max ? `${text.slice(0, max)}... (${text.length} chars)` : text;
}

export const maskSecrets = (text: string) => text.replace(/inf_[A-Za-z0-9]{8,}/g, 'inf_***').replace(/eyJ[\w-]+\.[\w-]+\.[\w-]*/g, '<jwt>');
