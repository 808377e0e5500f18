import type { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import type { Logger } from '../logging/logger.js';
import { MemoryRateLimiter, type RateLimitDecision, type RateLimiter } from './rate-limiter.js';

const WARN_EVERY_MS = 30_000;

/**
 * Budgets counted in Redis (rate-limiter-flexible's atomic increment with expiry), so every replica
 * spends from the same count. While Redis is unreachable each replica falls back to its own
 * in-memory counters (requests keep being limited, per replica) and says so in a warning at most
 * every 30 s; once Redis answers again its counts apply.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly #counters = new Map<number, RateLimiterRedis>();
  readonly #fallback = new MemoryRateLimiter();
  #warnedAt = 0;

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    private readonly prefix = 'inferno:rl',
  ) {}

  async hit(key: string, limit: number, windowMs: number): Promise<RateLimitDecision> {
    const counter = this.#counter(windowMs);
    let res;
    try {
      res = await counter.consume(key, 1);
    } catch (error) {
      this.#warn(error);
      return this.#fallback.hit(key, limit, windowMs);
    }
    const resetAt = Date.now() + res.msBeforeNext;
    const allowed = res.consumedPoints <= limit;
    // Refused requests are not counted, as in memory: a client that backs off is not punished further.
    if (!allowed) await counter.reward(key, 1).catch((error: unknown) => this.#warn(error));
    const used = allowed ? res.consumedPoints : res.consumedPoints - 1;
    return { allowed, limit, remaining: Math.max(0, limit - used), resetAt };
  }

  async refund(key: string, windowMs: number): Promise<void> {
    try {
      await this.#counter(windowMs).reward(key, 1);
    } catch (error) {
      this.#warn(error);
      await this.#fallback.refund(key, windowMs);
    }
  }

  async reset(key: string): Promise<void> {
    await Promise.all([...this.#counters.values()].map((counter) => counter.delete(key)));
    await this.#fallback.reset(key);
  }

  #counter(windowMs: number): RateLimiterRedis {
    let counter = this.#counters.get(windowMs);
    if (!counter) {
      counter = new RateLimiterRedis({
        storeClient: this.redis,
        keyPrefix: `${this.prefix}:${windowMs}`,
        points: Number.MAX_SAFE_INTEGER,
        duration: Math.ceil(windowMs / 1000),
        rejectIfRedisNotReady: true,
      });
      this.#counters.set(windowMs, counter);
    }
    return counter;
  }

  #warn(error: unknown): void {
    const now = Date.now();
    if (now - this.#warnedAt < WARN_EVERY_MS) return;
    this.#warnedAt = now;
    const reason = error instanceof Error ? error.message : String(error);
    this.logger.warn({ reason }, 'Redis is unreachable: rate limits fall back to this replica\'s own counters until it answers again');
  }
}
