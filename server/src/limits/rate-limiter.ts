export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** When the current window ends (ms since the epoch). */
  resetAt: number;
}

/**
 * Counts requests per key in fixed windows. The in-memory one is the embedded default; a shared
 * store (Redis) fits behind the same interface for several replicas.
 */
export interface RateLimiter {
  hit(key: string, limit: number, windowMs: number, now?: number): RateLimitDecision;
}

export class MemoryRateLimiter implements RateLimiter {
  readonly #windows = new Map<string, { count: number; resetAt: number }>();
  #lastSweep = 0;

  hit(key: string, limit: number, windowMs: number, now = Date.now()): RateLimitDecision {
    this.#sweep(now);
    let window = this.#windows.get(key);
    if (!window || window.resetAt <= now) {
      window = { count: 0, resetAt: now + windowMs };
      this.#windows.set(key, window);
    }
    // Refused requests are not counted, so a client that backs off is not punished further.
    const allowed = window.count < limit;
    if (allowed) window.count++;
    return { allowed, limit, remaining: Math.max(0, limit - window.count), resetAt: window.resetAt };
  }

  /** Forget the key's window (a successful login clears its failures). */
  reset(key: string): void {
    this.#windows.delete(key);
  }

  // Expired windows are dropped now and then so the map does not grow with every client ever seen.
  #sweep(now: number): void {
    if (now - this.#lastSweep < 60_000) return;
    this.#lastSweep = now;
    for (const [key, window] of this.#windows) if (window.resetAt <= now) this.#windows.delete(key);
  }
}
