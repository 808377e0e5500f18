// The client's options, typed once. Every option but `credentials`, `onRateLimit` and
// `responseValidator` can also be given per request, where it wins over the client's.

import type { RateLimitInfo } from './rate-limit.js';
import type { RetryTiming } from './retry.js';

/** Where the SDK writes what it does (retries, requests). `console` fits; every method is optional. */
export interface Logger {
  /** One line per request and response. */
  debug?(message: string, ...args: unknown[]): void;
  /** One line per retry. */
  info?(message: string, ...args: unknown[]): void;
  /** Problems the SDK worked around. */
  warn?(message: string, ...args: unknown[]): void;
  /** Unused so far; here so that `console` and common loggers fit. */
  error?(message: string, ...args: unknown[]): void;
}

/** Backoff settings (milliseconds); see {@link RetryTiming} for each field's meaning and default. */
export type RetryOptions = { [K in keyof RetryTiming]?: RetryTiming[K] | undefined };

/** Client-side throttling on the server's rate-limit headers, per credential. */
export interface RateLimitOptions {
  /**
   * Queue requests instead of sending ones that would get a 429: they wait in FIFO order and go
   * out as the window refills. A client that knows nothing yet sends one request first, whose
   * response tells the budget, then as many as it allows. Default `false`.
   */
  throttle?: boolean | undefined;
  /**
   * Longest wait in the queue in milliseconds, after which the call throws a `RateLimitError`
   * (at once when the window's reset is further away). Default: none; only `signal` ends a wait.
   */
  maxWait?: number | undefined;
  /** At most this many requests of one credential in flight at once; the others queue. Default: no cap. */
  maxConcurrent?: number | undefined;
}

/** What an `onRetry` hook is told before each retry. */
export interface RetryEvent {
  /** The operation being retried, e.g. `listModels`. */
  operation: string;
  /** Which retry this is: 1 for the first. */
  retry: number;
  /** The most retries this request may make. */
  maxRetries: number;
  /** How long the SDK waits before sending it again, in milliseconds. */
  delay: number;
  /** Whether the wait came from the server's `Retry-After` or from backoff. */
  reason: 'backoff' | 'retry-after';
  /** Why the previous attempt failed. */
  error: Error;
}

/**
 * Checks a successful response's data against the operation's schema and throws a
 * `ResponseValidationError` when it does not match. `responseValidator` from `@inferno/sdk/zod` is
 * the one built from the spec.
 */
export type ResponseValidator = (operation: string, data: unknown) => void | Promise<void>;

/** Username and password for `POST /api/v1/auth/login`. */
export interface LoginCredentials {
  /** The user's name. */
  username: string;
  /** The user's password. */
  password: string;
}

/** Options of one request; each one given here wins over the client's. */
export interface RequestOptions {
  /** Cancels the request, including any wait for a retry or for the rate limit. */
  signal?: AbortSignal | undefined;
  /**
   * Time allowed for each attempt to get its response (for a stream: its headers), in
   * milliseconds; `0` for none. Default 60,000.
   */
  timeout?: number | undefined;
  /** Most retries after the first attempt; `0` turns retrying off. Default 2. */
  maxRetries?: number | undefined;
  /** Backoff settings. */
  retry?: RetryOptions | undefined;
  /** Client-side throttling. */
  rateLimit?: RateLimitOptions | undefined;
  /** Extra headers. */
  headers?: Record<string, string> | undefined;
  /** The `fetch` to send with (e.g. one with a proxy agent, or a test double). Default `globalThis.fetch`. */
  fetch?: typeof fetch | undefined;
  /** Another server for this request. */
  baseUrl?: string | undefined;
  /** Send this API key (`X-API-Key`) instead of the client's credentials. */
  apiKey?: string | undefined;
  /**
   * The `Idempotency-Key` of this call, for the operations that take one (creating users, keys,
   * jobs and models, inference, embeddings). By default the SDK makes one per call
   * (`crypto.randomUUID()`) and sends it on every retry, so a retried call never runs twice; give
   * your own to make a call safe to repeat across processes, or `false` to send none.
   */
  idempotencyKey?: string | false | undefined;
  /** Send this bearer token instead of the client's credentials. */
  token?: string | undefined;
  /** Check the response against the spec's schema (needs the client's `responseValidator`). Default `false`. */
  validateResponses?: boolean | undefined;
  /**
   * A stream that receives nothing (not even a heartbeat comment) for this long, in
   * milliseconds, fails with a `TimeoutError`; `0` (or `Infinity`) for none. Default 30,000.
   */
  streamIdleTimeout?: number | undefined;
  /** Called before each retry. */
  onRetry?: ((event: RetryEvent) => void) | undefined;
  /** Where to log. Default: nowhere. */
  logger?: Logger | undefined;
}

/**
 * Options of an `InfernoClient`. Give one way to authenticate: `apiKey`, `token`, or
 * `credentials` (the client then logs in when first needed, and once more after a 401).
 */
export interface ClientOptions extends Omit<RequestOptions, 'baseUrl' | 'idempotencyKey'> {
  /** The server, e.g. `http://127.0.0.1:8080` (no `/api/v1`). */
  baseUrl: string;
  /** Username and password to log in with; the client keeps the token it gets. */
  credentials?: LoginCredentials | undefined;
  /**
   * Called with the rate-limit headers of every response that has them, except those the server
   * counts against the client's IP address rather than its credential: logins, requests sent
   * without a credential, and 401s.
   */
  onRateLimit?: ((info: RateLimitInfo) => void) | undefined;
  /**
   * What checks responses when `validateResponses` is on: import `responseValidator` from
   * `@inferno/sdk/zod`. Kept out of the main entry so that zod is only bundled when wanted.
   */
  responseValidator?: ResponseValidator | undefined;
}

/** Defaults of the options above. */
export const DEFAULTS = Object.freeze({
  timeout: 60_000,
  maxRetries: 2,
  streamIdleTimeout: 30_000,
});
