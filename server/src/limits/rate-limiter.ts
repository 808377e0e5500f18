import { RateLimiterMemory } from 'rate-limiter-flexible';

export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** When the current window ends (ms since the epoch). */
  resetAt: number;
}

/**
 * Counts requests per key in fixed windows. Asynchronous, so that a shared store (Redis, for
 * several replicas) fits behind the same interface; the in-memory one is the embedded default.
 */
export interface RateLimiter {
  /** Counts one request against `key`'s budget of `limit` per window; a refused request is not counted. */
  hit(key: string, limit: number, windowMs: number): Promise<RateLimitDecision>;
  /**
   * Gives back one request counted by an allowed `hit` in the same window (a later budget of the
   * same request refused it, so it was not served).
   */
  refund(key: string, windowMs: number): Promise<void>;
  /** Forgets the key's window. */
  reset(key: string): Promise<void>;
}

/**
 * rate-limiter-flexible's in-memory counters (expired windows are dropped on their own). The limit
 * is applied here, per call, rather than fixed in the counter: it may change at run time
 * (`PATCH /config`) or differ per key, and a changed limit then applies to the running window.
 */
export class MemoryRateLimiter implements RateLimiter {
  readonly #counters = new Map<number, RateLimiterMemory>();

  async hit(key: string, limit: number, windowMs: number): Promise<RateLimitDecision> {
    const counter = this.#counter(windowMs);
    const now = Date.now();
    const res = await counter.consume(key, 1);
    const resetAt = now + res.msBeforeNext;
    const allowed = res.consumedPoints <= limit;
    // Refused requests are not counted, so a client that backs off is not punished further.
    if (!allowed) await counter.reward(key, 1);
    const used = allowed ? res.consumedPoints : res.consumedPoints - 1;
    return { allowed, limit, remaining: Math.max(0, limit - used), resetAt };
  }

  async refund(key: string, windowMs: number): Promise<void> {
    await this.#counter(windowMs).reward(key, 1);
  }

  async reset(key: string): Promise<void> {
    await Promise.all([...this.#counters.values()].map((counter) => counter.delete(key)));
  }

  #counter(windowMs: number): RateLimiterMemory {
    let counter = this.#counters.get(windowMs);
    if (!counter) {
      // The counter never refuses by itself: `hit` compares against the limit of the moment.
      counter = new RateLimiterMemory({ points: Number.MAX_SAFE_INTEGER, duration: Math.ceil(windowMs / 1000) });
      this.#counters.set(windowMs, counter);
    }
    return counter;
  }
}
