import type { Redis } from 'ioredis';
import { ApiError } from '../http/errors.js';
import { addressKey, loginVerdict, pairKey, userKey, type Failures, type LoginLimits, type LoginThrottle, type LoginVerdict } from './login-throttle.js';

/**
 * The login throttle of `MemoryLoginThrottle` with its counters in Redis, shared by every replica:
 * a lockout earned on one holds on all. Each counter is a hash (count, last failure) that expires
 * with the lockout window. While Redis is unreachable logins fail closed: 503, never an unthrottled
 * password guess.
 */
export class RedisLoginThrottle implements LoginThrottle {
  constructor(
    private readonly redis: Redis,
    private readonly limits: () => LoginLimits,
    private readonly prefix = 'inferno:login',
  ) {}

  async check(username: string, ip: string): Promise<LoginVerdict> {
    const keys = [pairKey(username, ip), addressKey(ip), userKey(username)].map((k) => `${this.prefix}:${k}`);
    const rows = await this.#guard(async () => {
      const pipeline = this.redis.pipeline();
      for (const key of keys) pipeline.hmget(key, 'count', 'last');
      return (await pipeline.exec()) ?? [];
    });
    const entries = rows.map(([error, value]): Failures | undefined => {
      if (error) throw unavailable();
      const [count, last] = value as [string | null, string | null];
      return count === null || last === null ? undefined : { count: Number(count), last: Number(last) };
    });
    return loginVerdict({ pair: entries[0], address: entries[1], user: entries[2] }, this.limits(), Date.now());
  }

  async recordFailure(username: string, ip: string): Promise<void> {
    const windowMs = this.limits().lockoutSeconds * 1000;
    const now = Date.now();
    await this.#guard(async () => {
      const multi = this.redis.multi();
      for (const key of [pairKey(username, ip), userKey(username), addressKey(ip)].map((k) => `${this.prefix}:${k}`)) {
        // Each failure extends the window, as in memory: a slow, steady guesser stays locked out.
        multi.hincrby(key, 'count', 1).hset(key, 'last', now).pexpire(key, windowMs);
      }
      await multi.exec();
    });
  }

  async recordSuccess(username: string, ip: string): Promise<void> {
    await this.#guard(() => this.redis.del(`${this.prefix}:${pairKey(username, ip)}`, `${this.prefix}:${userKey(username)}`));
  }

  async #guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch {
      throw unavailable();
    }
  }
}

function unavailable(): ApiError {
  return new ApiError('SERVICE_UNAVAILABLE', 'Logins are unavailable for a moment (the shared login throttle cannot be reached); retry shortly', undefined, { 'Retry-After': '5' });
}
