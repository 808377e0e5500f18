// Retry policy and timing as pure functions: what may be retried, and how long to wait first.
// The transport runs the loop; everything it decides comes from here.

/** Backoff and `Retry-After` settings, all in milliseconds. */
export interface RetryTiming {
  /** Wait before the first retry; doubles each retry. Default 500. */
  baseDelay: number;
  /** Longest backoff between two attempts. Default 8,000. */
  maxDelay: number;
  /** Share of each backoff taken off at random, 0 to 1 (0: none). Default 0.25. */
  jitter: number;
  /** Longest `Retry-After` honoured; a longer one throws at once. Default 60,000. */
  maxRetryAfter: number;
}

/** The defaults of {@link RetryTiming}. */
export const DEFAULT_RETRY_TIMING: Readonly<RetryTiming> = Object.freeze({
  baseDelay: 500,
  maxDelay: 8_000,
  jitter: 0.25,
  maxRetryAfter: 60_000,
});

/** How an attempt failed, as far as the retry policy cares. */
export type AttemptFailure =
  /**
   * The server answered with an error status; `retryAfter` in ms when it sent a valid
   * `Retry-After`; `inFlight` when it is the 409 of an `Idempotency-Key` whose first request still runs.
   */
  | { kind: 'response'; status: number; retryAfter?: number | undefined; inFlight?: boolean | undefined }
  /**
   * No response: the connection failed or dropped before any response arrived. `notSent` when the
   * error proves the request never left (connection refused, DNS failure): then even a POST may
   * be repeated. A connection closed after the request was written is no such proof.
   */
  | { kind: 'connection'; notSent?: boolean | undefined }
  /** The response started but its body was cut off (the server did process the request). */
  | { kind: 'interrupted' }
  /** No response within the request's timeout (the server may still be working on it). */
  | { kind: 'timeout' };

/** What to do after a failed attempt. */
export type RetryDecision =
  | { retry: true; delay: number; reason: 'backoff' | 'retry-after' }
  | { retry: false; reason: 'not-retryable' | 'exhausted' | 'retry-after-too-long'; retryAfter?: number };

/** Statuses worth another attempt: timeouts, rate limits and transient server failures. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504]);

/** Statuses that prove the server did not process the request, so even a POST may be repeated. */
export const NOT_PROCESSED_STATUSES: ReadonlySet<number> = new Set([429, 503]);

const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** Whether repeating the request is harmless by HTTP semantics (GET, PUT, DELETE, ...; not POST or PATCH). */
export function isIdempotent(method: string): boolean {
  return IDEMPOTENT_METHODS.has(method.toUpperCase());
}

/**
 * Whether a failure may be retried. Idempotent requests, and POSTs sent with an `Idempotency-Key`
 * (the server answers a repeat with the first response instead of running it again): connection
 * failures, timeouts and the {@link RETRYABLE_STATUSES}, and for keyed POSTs the 409 that says the
 * first request with the key still runs. Other POSTs and PATCHes only when the failure proves the
 * request was not processed: 429 or 503, or a connection that failed before the request left
 * (refused, DNS). A connection closed after sending, a timeout or a body cut off midway is no
 * such proof: the server may have done the work.
 */
export function isRetryable(method: string, failure: AttemptFailure, idempotencyKey = false): boolean {
  const repeatable = idempotencyKey || isIdempotent(method);
  switch (failure.kind) {
    case 'connection':
      return repeatable || failure.notSent === true;
    case 'interrupted':
    case 'timeout':
      return repeatable;
    case 'response':
      if (failure.inFlight) return idempotencyKey;
      return repeatable ? RETRYABLE_STATUSES.has(failure.status) : NOT_PROCESSED_STATUSES.has(failure.status);
  }
}

/**
 * Backoff before retry number `retry` (1 for the first retry): `baseDelay * 2^(retry-1)`, capped at
 * `maxDelay`, minus up to `jitter` of it at random so that clients failing together spread out.
 */
export function backoffDelay(retry: number, timing: RetryTiming, random: () => number = Math.random): number {
  const exponential = timing.baseDelay * 2 ** Math.max(0, retry - 1);
  const capped = Math.min(exponential, timing.maxDelay);
  const jitter = Math.min(Math.max(timing.jitter, 0), 1);
  return Math.round(capped * (1 - jitter * random()));
}

/**
 * A `Retry-After` header in milliseconds: delta seconds (`"120"`, `"1.5"`) or an HTTP date
 * (`"Wed, 21 Oct 2026 07:28:00 GMT"`, counted from `now`). A date in the past gives 0; a missing
 * or malformed value gives `undefined`.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const trimmed = value.trim();
  if (trimmed === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  // An HTTP date always names its month; without this, Date.parse('-5') would read a year.
  if (!/[a-z]{3}/i.test(trimmed)) return undefined;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** Everything {@link planRetry} decides from. */
export interface RetryState {
  /** The request method. */
  method: string;
  /** Whether the request carries an `Idempotency-Key`, which makes a POST safe to repeat. */
  idempotencyKey?: boolean | undefined;
  /** How the last attempt failed. */
  failure: AttemptFailure;
  /** Retries already made (0 after the first attempt failed). */
  retriesDone: number;
  /** Most retries allowed (0: never retry). */
  maxRetries: number;
  /** Backoff and `Retry-After` settings. */
  timing: RetryTiming;
  /** Source of randomness for jitter, `Math.random` by default; tests pass a fixed one. */
  random?: () => number;
}

/**
 * Whether to retry after a failed attempt, and after how long. A `Retry-After` from the server
 * wins over backoff when it is within `maxRetryAfter`; beyond it there is no point waiting, and
 * the decision says so with the wait in `retryAfter`.
 */
export function planRetry(state: RetryState): RetryDecision {
  const { failure, timing } = state;
  if (!isRetryable(state.method, failure, state.idempotencyKey)) return { retry: false, reason: 'not-retryable' };
  if (state.retriesDone >= state.maxRetries) return { retry: false, reason: 'exhausted' };
  if (failure.kind === 'response' && failure.retryAfter !== undefined) {
    if (failure.retryAfter > timing.maxRetryAfter) {
      return { retry: false, reason: 'retry-after-too-long', retryAfter: failure.retryAfter };
    }
    return { retry: true, delay: failure.retryAfter, reason: 'retry-after' };
  }
  return { retry: true, delay: backoffDelay(state.retriesDone + 1, timing, state.random), reason: 'backoff' };
}
