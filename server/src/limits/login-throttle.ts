/**
 * Slows password guessing without handing anyone a way to lock others out:
 *
 * - a (username, address) pair is locked after `maxFailures` failures: the guesser is stopped, the
 *   user elsewhere is not;
 * - a username failing from anywhere only gets a growing delay before each further attempt is
 *   answered (1 s, doubling, at most MAX_DELAY_MS): the right password still gets in, and
 *   guessing from many addresses slows down;
 * - an address is locked after `maxFailuresPerAddress` failures whatever the usernames (a
 *   password sprayer); each pair stops counting at its own lock, so one user's typos on a shared
 *   address (localhost, an office NAT) never lock the others out.
 *
 * Lockouts are computed from the last failure when asked, so a changed `lockoutSeconds` applies to
 * lockouts already running. Asynchronous, so that a shared store (Redis) fits behind it later.
 */
export interface LoginLimits {
  maxFailures: number;
  maxFailuresPerAddress: number;
  lockoutSeconds: number;
}

export interface LoginVerdict {
  /** Seconds until the pair or the address may try again; 0 when an attempt is allowed. */
  retryAfter: number;
  /** How long to hold the answer back (the username's growing delay). */
  delayMs: number;
}

export interface LoginThrottle {
  check(username: string, ip: string): Promise<LoginVerdict>;
  recordFailure(username: string, ip: string): Promise<void>;
  recordSuccess(username: string, ip: string): Promise<void>;
}

export const MAX_DELAY_MS = 8_000;
const MAX_ENTRIES = 100_000;

export interface Failures {
  count: number;
  last: number;
}

/** The failure counters one check reads: the (username, address) pair, the address, the username. */
export interface CheckedFailures {
  pair?: Failures;
  address?: Failures;
  user?: Failures;
}

/** The verdict from the counters of the moment (entries older than the lockout already dropped). */
export function loginVerdict(entries: CheckedFailures, limits: LoginLimits, now: number): LoginVerdict {
  const windowMs = limits.lockoutSeconds * 1000;
  let retryAfter = 0;
  for (const [entry, max] of [[entries.pair, limits.maxFailures], [entries.address, limits.maxFailuresPerAddress]] as const) {
    if (entry && entry.last + windowMs > now && entry.count >= max) retryAfter = Math.max(retryAfter, Math.ceil((entry.last + windowMs - now) / 1000));
  }
  const user = entries.user && entries.user.last + windowMs > now ? entries.user : undefined;
  const over = user ? user.count - limits.maxFailures : -1;
  const delayMs = over < 0 ? 0 : Math.min(MAX_DELAY_MS, 1000 * 2 ** Math.min(over, 16));
  return { retryAfter, delayMs };
}

export class MemoryLoginThrottle implements LoginThrottle {
  readonly #failures = new Map<string, Failures>();

  constructor(private readonly limits: () => LoginLimits) {}

  async check(username: string, ip: string, now = Date.now()): Promise<LoginVerdict> {
    const limits = this.limits();
    const windowMs = limits.lockoutSeconds * 1000;
    const entries = {
      pair: this.#current(pairKey(username, ip), windowMs, now),
      address: this.#current(addressKey(ip), windowMs, now),
      user: this.#current(userKey(username), windowMs, now),
    };
    return loginVerdict(entries, limits, now);
  }

  async recordFailure(username: string, ip: string, now = Date.now()): Promise<void> {
    const windowMs = this.limits().lockoutSeconds * 1000;
    for (const key of [pairKey(username, ip), userKey(username), addressKey(ip)]) {
      const entry = this.#current(key, windowMs, now);
      // Each failure extends the window: a slow, steady guesser stays locked out.
      this.#failures.set(key, { count: (entry?.count ?? 0) + 1, last: now });
    }
    if (this.#failures.size > MAX_ENTRIES) this.#sweep(windowMs, now);
  }

  async recordSuccess(username: string, ip: string): Promise<void> {
    this.#failures.delete(pairKey(username, ip));
    this.#failures.delete(userKey(username));
  }

  #current(key: string, windowMs: number, now: number): Failures | undefined {
    const entry = this.#failures.get(key);
    if (entry && entry.last + windowMs <= now) {
      this.#failures.delete(key);
      return undefined;
    }
    return entry;
  }

  #sweep(windowMs: number, now: number): void {
    for (const [key, entry] of this.#failures) if (entry.last + windowMs <= now) this.#failures.delete(key);
    // Still full (a flood of distinct names): drop the oldest, which are first in insertion order.
    for (const key of this.#failures.keys()) {
      if (this.#failures.size <= MAX_ENTRIES * 0.9) break;
      this.#failures.delete(key);
    }
  }
}

// Usernames are matched without regard to case, as the store does. A newline cannot be in either part.
export const pairKey = (username: string, ip: string) => `pair:${username.toLowerCase()}\n${ip}`;
export const userKey = (username: string) => `user:${username.toLowerCase()}`;
export const addressKey = (ip: string) => `ip:${ip}`;
