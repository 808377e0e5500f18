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

/** A count of decimal digits (surrounding whitespace allowed): read by hand, as it is read on every response. */
function toCount(value: string | null): number | undefined {
  if (value === null) return undefined;
  let start = 0;
  let end = value.length;
  while (start < end && isSpace(value.charCodeAt(start))) start++;
  while (end > start && isSpace(value.charCodeAt(end - 1))) end--;
  if (start === end) return undefined;
  let count = 0;
  for (let i = start; i < end; i++) {
    const digit = value.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return undefined;
    count = count * 10 + digit;
  }
  return count;
}

function isSpace(code: number): boolean {
  return code === 32 || code === 9;
}

/** Called with every rate-limit update, success and error responses alike (see {@link RateLimitTracker} for which count). */
export type RateLimitListener = (info: RateLimitInfo) => void;

/** Gives back the slot a request held, once its response (or failure) is in. */
export type ReleaseSlot = () => void;

/** How one request waits for its turn. */
export interface AcquireOptions {
  /** Hold the request back while the window's budget is spent (else it only counts as in flight). */
  throttle: boolean;
  /** At most this many requests of the credential in flight at once. */
  maxConcurrent?: number | undefined;
  /** Longest wait in ms; none by default (only `signal` ends a wait). */
  maxWait?: number | undefined;
  /** Ends the wait with its reason. */
  signal?: AbortSignal | undefined;
}

interface Waiter {
  options: AcquireOptions;
  resolve: (release: ReleaseSlot) => void;
  reject: (error: unknown) => void;
  cleanUp: () => void;
}

/** The key of the client's own credential in {@link RateLimitTracker}. */
export const OWN_CREDENTIAL = 'own';
// Buckets of per-request credentials kept at most; idle ones beyond are forgotten.
const MAX_BUCKETS = 64;

/**
 * The rate-limit state of one credential and its queue. Requests that would certainly be refused
 * wait in FIFO order and go out as the window refills:
 *
 * - Nothing known (a cold client, or a window that has passed): one request goes alone and its
 *   response tells the window's `remaining` and `reset`; the rest wait for it.
 * - A known window: as many go as it has left, less the requests still in flight (responses to
 *   concurrent requests arrive out of order, so a later one can only lower the budget).
 * - A spent window: the queue waits until its reset, then probes the next one.
 */
class Bucket {
  latest: RateLimitInfo | undefined;
  #budget: number | undefined;
  #windowEnd: number | undefined;
  #inFlight = 0;
  #probing = false;
  #queue: Waiter[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  get idle(): boolean {
    return this.#inFlight === 0 && this.#queue.length === 0;
  }

  update(info: RateLimitInfo): void {
    this.latest = info;
    const reset = info.reset.getTime();
    // A window that has already ended says nothing about the budget (a late response).
    if (reset > Date.now()) {
      if (this.#windowEnd === undefined || reset > this.#windowEnd || this.#budget === undefined) {
        // A new window. The other requests in flight may not be counted in `remaining` yet:
        // assume they are not, rather than send more than the window allows.
        this.#windowEnd = reset;
        this.#budget = Math.max(0, info.remaining - Math.max(0, this.#inFlight - 1));
        this.#probing = false;
      } else if (reset === this.#windowEnd) {
        this.#budget = Math.min(this.#budget, info.remaining);
      }
    }
    this.#pump();
  }

  /** Counts a request that does not wait (throttling off): it still spends the window's budget. */
  begin(): ReleaseSlot {
    if (this.#budget !== undefined) this.#budget = Math.max(0, this.#budget - 1);
    return this.#take(false);
  }

  acquire(options: AcquireOptions, tooLong: (wait: number | undefined) => Error): Promise<ReleaseSlot> {
    const { signal, maxWait } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<ReleaseSlot>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const remove = () => {
        const index = this.#queue.indexOf(waiter);
        if (index >= 0) this.#queue.splice(index, 1);
        waiter.cleanUp();
        // The head may have left: the next one may go now.
        this.#pump();
      };
      const onAbort = () => {
        remove();
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        options,
        resolve,
        reject,
        cleanUp: () => {
          if (timer !== undefined) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      if (maxWait !== undefined && Number.isFinite(maxWait)) {
        timer = setTimeout(() => {
          remove();
          reject(tooLong(undefined));
        }, Math.max(0, maxWait));
      }
      this.#queue.push(waiter);
      this.#pump();
      // A reset further away than maxWait: no point waiting for it.
      const wait = this.#windowEnd === undefined ? undefined : this.#windowEnd - Date.now();
      if (this.#queue.includes(waiter) && this.#budget === 0 && wait !== undefined && maxWait !== undefined && wait > maxWait) {
        remove();
        reject(tooLong(wait));
      }
    });
  }

  #take(probe: boolean): ReleaseSlot {
    this.#inFlight++;
    if (probe) this.#probing = true;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inFlight--;
      // A probe that brought no headers (a failure) hands the probing on.
      if (probe) this.#probing = false;
      this.#pump();
    };
  }

  #pump(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    while (this.#queue.length > 0) {
      const head = this.#queue[0]!;
      const { maxConcurrent, throttle } = head.options;
      if (maxConcurrent !== undefined && this.#inFlight >= maxConcurrent) return; // a release pumps again
      let probe = false;
      if (throttle) {
        const now = Date.now();
        if (this.#windowEnd !== undefined && now >= this.#windowEnd) {
          // The window has passed: the next one is unknown until a response tells it.
          this.#windowEnd = undefined;
          this.#budget = undefined;
        }
        if (this.#budget === undefined) {
          if (this.#probing) return; // the probe's response (or failure) pumps again
          probe = true;
        } else if (this.#budget <= 0) {
          if (this.#windowEnd !== undefined) this.#timer = setTimeout(() => this.#pump(), this.#windowEnd - now);
          return;
        } else {
          this.#budget--;
        }
      }
      this.#queue.shift();
      head.cleanUp();
      head.resolve(this.#take(probe));
    }
  }
}

/**
 * Keeps the rate-limit state the server reports, per credential (the client's own, and each
 * per-request `apiKey` or `token` apart, so that one never spends or overwrites the other's), and
 * throttles requests when asked: see {@link Bucket} for the queue. Waits are bounded only by the
 * caller's signal or an explicit `maxWait`.
 *
 * Only responses that spend the budget of a credential belong here: the transport leaves out
 * logins and other requests sent without a credential, and 401s, which the server counts against
 * the client's IP address instead.
 */
export class RateLimitTracker {
  readonly #buckets = new Map<string, Bucket>();
  readonly #listeners: RateLimitListener[] = [];

  /** The latest state the server reported for the client's own credential, or `undefined` before the first. */
  get latest(): RateLimitInfo | undefined {
    return this.#buckets.get(OWN_CREDENTIAL)?.latest;
  }

  /** The latest state reported for a credential (`OWN_CREDENTIAL` for the client's own). */
  latestFor(credential: string): RateLimitInfo | undefined {
    return this.#buckets.get(credential)?.latest;
  }

  /** Calls `listener` on every update of the client's own credential; returns the function that stops it. */
  subscribe(listener: RateLimitListener): () => void {
    this.#listeners.push(listener);
    return () => {
      const index = this.#listeners.indexOf(listener);
      if (index >= 0) this.#listeners.splice(index, 1);
    };
  }

  /** Records the rate-limit headers of a response sent with `credential`, if it has them, and returns what it read. */
  update(headers: Headers, credential: string = OWN_CREDENTIAL): RateLimitInfo | undefined {
    const info = parseRateLimit(headers);
    if (!info) return undefined;
    this.#bucket(credential).update(info);
    if (credential === OWN_CREDENTIAL) for (const listener of this.#listeners) listener(info);
    return info;
  }

  /**
   * Takes a slot for one request of `credential`: at once when neither throttling nor a
   * concurrency cap holds it back, else in FIFO order. Rejects with the signal's reason when it
   * aborts, and with a {@link RateLimitError} when `maxWait` runs out (or the window's reset is
   * further away than it).
   */
  acquire(options: AcquireOptions, credential: string = OWN_CREDENTIAL): Promise<ReleaseSlot> | ReleaseSlot {
    const bucket = this.#bucket(credential);
    if (!options.throttle && options.maxConcurrent === undefined) return bucket.begin();
    return bucket.acquire(options, (wait) => this.#tooLong(bucket, wait, options.maxWait ?? 0));
  }

  #bucket(credential: string): Bucket {
    let bucket = this.#buckets.get(credential);
    if (!bucket) {
      if (this.#buckets.size >= MAX_BUCKETS) {
        for (const [key, other] of this.#buckets) {
          if (key !== OWN_CREDENTIAL && other.idle) {
            this.#buckets.delete(key);
            break;
          }
        }
      }
      bucket = new Bucket();
      this.#buckets.set(credential, bucket);
    }
    return bucket;
  }

  #tooLong(bucket: Bucket, wait: number | undefined, maxWait: number): RateLimitError {
    const message =
      wait === undefined
        ? `Rate limit spent: no request slot within the longest the throttle may wait (${duration(maxWait)})`
        : `Rate limit spent: the window resets in ${Math.ceil(wait / 1000)} s, longer than the throttle may wait (${duration(maxWait)})`;
    return new RateLimitError({
      status: 429,
      headers: new Headers(),
      body: { error: { code: 'RATE_LIMITED', message, details: null } },
      retryAfter: wait === undefined ? undefined : Math.ceil(wait / 1000),
      rateLimit: bucket.latest,
    });
  }
}

function duration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}
