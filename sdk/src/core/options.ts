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
export type RetryOptions = Partial<RetryTiming>;

/** Client-side throttling on the server's rate-limit headers. */
export interface RateLimitOptions {
  /**
   * When the server said no requests are left in the current window, wait until the window
   * resets instead of sending a request that would get a 429. Default `false`.
   */
  throttle?: boolean;
  /**
   * Longest such wait in milliseconds, in all: a reset further away throws a `RateLimitError`
   * at once, and so does a wait of unknown length (for the responses of requests still in
   * flight to tell the new window) once it has lasted this long. Default 60,000.
   */
  maxWait?: number;
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
  signal?: AbortSignal;
  /**
   * Time allowed for each attempt to get its response (for a stream: its headers), in
   * milliseconds; `0` for none. Default 60,000.
   */
  timeout?: number;
  /** Most retries after the first attempt; `0` turns retrying off. Default 2. */
  maxRetries?: number;
  /** Backoff settings. */
  retry?: RetryOptions;
  /** Client-side throttling. */
  rateLimit?: RateLimitOptions;
  /** Extra headers. */
  headers?: Record<string, string>;
  /** The `fetch` to send with (e.g. one with a proxy agent, or a test double). Default `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** Another server for this request. */
  baseUrl?: string;
  /** Send this API key (`X-API-Key`) instead of the client's credentials. */
  apiKey?: string;
  /** Send this bearer token instead of the client's credentials. */
  token?: string;
  /** Check the response against the spec's schema (needs the client's `responseValidator`). Default `false`. */
  validateResponses?: boolean;
  /**
   * A stream that receives nothing (not even a heartbeat comment) for this long, in
   * milliseconds, fails with a `TimeoutError`; `0` (or `Infinity`) for none. Default 30,000.
   */
  streamIdleTimeout?: number;
  /** Called before each retry. */
  onRetry?: (event: RetryEvent) => void;
  /** Where to log. Default: nowhere. */
  logger?: Logger;
}

/**
 * Options of an `InfernoClient`. Give one way to authenticate: `apiKey`, `token`, or
 * `credentials` (the client then logs in when first needed, and once more after a 401).
 */
export interface ClientOptions extends Omit<RequestOptions, 'baseUrl'> {
  /** The server, e.g. `http://127.0.0.1:8080` (no `/api/v1`). */
  baseUrl: string;
  /** Username and password to log in with; the client keeps the token it gets. */
  credentials?: LoginCredentials;
  /**
   * Called with the rate-limit headers of every response that has them, except those the server
   * counts against the client's IP address rather than its credential: logins, requests sent
   * without a credential, and 401s.
   */
  onRateLimit?: (info: RateLimitInfo) => void;
  /**
   * What checks responses when `validateResponses` is on: import `responseValidator` from
   * `@inferno/sdk/zod`. Kept out of the main entry so that zod is only bundled when wanted.
   */
  responseValidator?: ResponseValidator;
}

/** Defaults of the options above. */
export const DEFAULTS = Object.freeze({
  timeout: 60_000,
  maxRetries: 2,
  throttleMaxWait: 60_000,
  streamIdleTimeout: 30_000,
});
