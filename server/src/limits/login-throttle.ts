/**
 * Slows down password guessing: after `maxFailures` failed logins for one username, or from one
 * client IP, further attempts are refused until the lockout window ends.
 */
export class LoginThrottle {
  readonly #failures = new Map<string, { count: number; until: number }>();

  constructor(private readonly limits: () => { maxFailures: number; lockoutSeconds: number }) {}

  /** Seconds to wait before another attempt is allowed, or 0. */
  retryAfter(username: string, ip: string, now = Date.now()): number {
    const { maxFailures } = this.limits();
    let wait = 0;
    for (const key of keys(username, ip)) {
      const entry = this.#failures.get(key);
      if (!entry) continue;
      if (entry.until <= now) this.#failures.delete(key);
      else if (entry.count >= maxFailures) wait = Math.max(wait, Math.ceil((entry.until - now) / 1000));
    }
    return wait;
  }

  recordFailure(username: string, ip: string, now = Date.now()): void {
    const until = now + this.limits().lockoutSeconds * 1000;
    for (const key of keys(username, ip)) {
      const entry = this.#failures.get(key);
      // Each failure extends the window: a slow, steady guesser stays locked out.
      this.#failures.set(key, { count: (entry && entry.until > now ? entry.count : 0) + 1, until });
    }
    if (this.#failures.size > 100_000) this.#sweep(now);
  }

  recordSuccess(username: string): void {
    this.#failures.delete(`user:${username.toLowerCase()}`);
  }

  #sweep(now: number): void {
    for (const [key, entry] of this.#failures) if (entry.until <= now) this.#failures.delete(key);
  }
}

const keys = (username: string, ip: string) => [`user:${username.toLowerCase()}`, `ip:${ip}`];
