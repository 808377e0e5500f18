import { RateLimitError } from './errors.js';

/** The rate-limit state the server reported on its latest response. */
export interface RateLimitInfo {
  /** Requests allowed per window (`X-RateLimit-Limit`). */
  limit: number;
  /** Requests left in the current window (`X-RateLimit-Remaining`). */
  remaining: number;
  /** When the current window ends (`X-RateLimit-Reset`, Unix seconds). */
  reset: Date;
}

/** Reads `X-RateLimit-Limit`, `-Remaining` and `-Reset`; `undefined` unless all three are valid numbers. */
export function parseRateLimit(headers: Headers): RateLimitInfo | undefined {
  const limit = toCount(headers.get('x-ratelimit-limit'));
  const remaining = toCount(headers.get('x-ratelimit-remaining'));
  const reset = toCount(headers.get('x-ratelimit-reset'));
  if (limit === undefined || remaining === undefined || reset === undefined) return undefined;
  return { limit, remaining, reset: new Date(reset * 1000) };
}

function toCount(value: string | null): number | undefined {
  if (value === null || !/^\s*\d+\s*$/.test(value)) return undefined;
  return Number(value);
}

/** Called with every rate-limit update, success and error responses alike (see {@link RateLimitTracker} for which count). */
export type RateLimitListener = (info: RateLimitInfo) => void;

/** Gives back the slot a throttled request held, once its response (or failure) is in. */
export type ReleaseSlot = () => void;

/**
 * Keeps the latest rate-limit state of one client and, when throttling is on, holds requests back
 * instead of sending ones that would certainly be refused with 429.
 *
 * Throttling keeps a local budget of requests for the current window: the server's `remaining`
 * less the requests still in flight, lowered by each request sent (a later response of the same
 * window can only lower it, since responses to concurrent requests arrive out of order). With the
 * budget spent, callers wait until the window's reset; then at most `limit` of them go (the new
 * window's allowance, less requests still in flight) and the rest wait for the responses that
 * tell the new window's numbers. So
 * N waiting callers do not all fire at the reset. A caller waits `maxWait` in all at most: a
 * reset further away throws a {@link RateLimitError} at once, and a wait of unknown length (for
 * the responses still in flight to tell the new window) throws one when `maxWait` has passed.
 * Before the first response with the headers nothing is known, and nothing is held back.
 *
 * Only responses that spend the budget of the client's credential belong here: the transport
 * leaves out logins and other requests sent without a credential, and 401s, which the server
 * counts against the client's IP address instead.
 */
export class RateLimitTracker {
  #latest: RateLimitInfo | undefined;
  #budget: number | undefined;
  /** End of the window the budget belongs to (ms); `undefined` once it has passed and no response told the next one. */
  #windowEnd: number | undefined;
  #inFlight = 0;
  readonly #waiters = new Set<() => void>();
  readonly #listeners: RateLimitListener[] = [];

  /** The latest state the server reported, or `undefined` before the first response with the headers. */
  get latest(): RateLimitInfo | undefined {
    return this.#latest;
  }

  /** Calls `listener` on every update; returns the function that stops it. */
  subscribe(listener: RateLimitListener): () => void {
    this.#listeners.push(listener);
    return () => {
      const index = this.#listeners.indexOf(listener);
      if (index >= 0) this.#listeners.splice(index, 1);
    };
  }

  /** Records the rate-limit headers of a response, if it has them, and returns what it read. */
  update(headers: Headers): RateLimitInfo | undefined {
    const info = parseRateLimit(headers);
    if (!info) return undefined;
    this.#latest = info;
    const reset = info.reset.getTime();
    // A window that has already ended says nothing about the budget (a late response).
    if (reset > Date.now()) {
      if (this.#windowEnd === undefined || reset > this.#windowEnd || this.#budget === undefined) {
        // A new window. The other requests still in flight may not be counted in this `remaining`
        // yet: assume they are not, rather than send more than the window allows.
        const othersInFlight = Math.max(0, this.#inFlight - 1);
        this.#windowEnd = reset;
        this.#budget = Math.max(0, info.remaining - othersInFlight);
      } else if (reset === this.#windowEnd) {
        this.#budget = Math.min(this.#budget, info.remaining);
      }
    }
    for (const listener of this.#listeners) listener(info);
    this.#wake();
    return info;
  }

  /**
   * Waits, when the budget of the current window is spent, until a request may go without a
   * certain 429; then takes one slot. Rejects with the signal's reason when it aborts, and with a
   * {@link RateLimitError} when the wait would be longer than `maxWait` ms in all.
   */
  async acquire(options: { maxWait: number; signal?: AbortSignal | undefined }): Promise<ReleaseSlot> {
    const { signal, maxWait } = options;
    const deadline = Date.now() + maxWait;
    for (;;) {
      signal?.throwIfAborted();
      const now = Date.now();
      if (this.#windowEnd !== undefined && now >= this.#windowEnd && this.#latest) {
        // The window has passed: the new one allows `limit`, until responses tell us more. Requests
        // still in flight may land in the new window, so they count against it.
        this.#windowEnd = undefined;
        this.#budget = Math.max(0, this.#latest.limit - this.#inFlight);
      }
      const budget = this.#budget;
      if (budget === undefined || budget > 0) {
        if (budget !== undefined) this.#budget = budget - 1;
        return this.#takeSlot();
      }
      if (this.#windowEnd === undefined) {
        // Spent, and no response has told us the new window yet: let one request probe it when
        // nothing else is in flight, otherwise wait for the in-flight ones to report.
        // Their responses may take long (a slow request, a stream's headers): wait no longer than
        // maxWait for them.
        if (this.#inFlight === 0) return this.#takeSlot();
        const left = deadline - now;
        if (left <= 0) throw this.#unknownWindowError(maxWait);
        await this.#waitForChange(left, signal);
        continue;
      }
      const wait = this.#windowEnd - now;
      if (now + wait > deadline) throw this.#tooLongError(wait, maxWait);
      await this.#waitForChange(wait, signal);
    }
  }

  #takeSlot(): ReleaseSlot {
    this.#inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inFlight--;
      this.#wake();
    };
  }

  /** Resolves at the next update or release, or after `ms`; rejects when the signal aborts. */
  #waitForChange(ms: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const cleanUp = () => {
        this.#waiters.delete(done);
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const done = () => {
        cleanUp();
        resolve();
      };
      const onAbort = () => {
        cleanUp();
        reject(signal?.reason);
      };
      const timer = ms === undefined ? undefined : setTimeout(done, ms);
      this.#waiters.add(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  #wake(): void {
    if (this.#waiters.size === 0) return;
    for (const waiter of [...this.#waiters]) waiter();
  }

  #tooLongError(wait: number, maxWait: number): RateLimitError {
    const seconds = Math.ceil(wait / 1000);
    const message =
      `Rate limit spent: the window resets in ${seconds} s, ` +
      `longer than the throttle may wait (${duration(maxWait)})`;
    return this.#rateLimitError(message, seconds);
  }

  #unknownWindowError(maxWait: number): RateLimitError {
    const message =
      `Rate limit spent: the requests in flight did not tell the new window ` +
      `within the longest the throttle may wait (${duration(maxWait)})`;
    return this.#rateLimitError(message, undefined);
  }

  #rateLimitError(message: string, retryAfter: number | undefined): RateLimitError {
    return new RateLimitError({
      status: 429,
      headers: new Headers(),
      body: { error: { code: 'RATE_LIMITED', message, details: null } },
      retryAfter,
      rateLimit: this.#latest,
    });
  }
}

function duration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}
