import { Redis } from 'ioredis';
import { redactUrl } from '../config.js';

/** Redis could not be reached at start: a start-up error with no stack and no password. */
export class RedisUnavailableError extends Error {
  override name = 'RedisUnavailableError';
}

/**
 * A Redis client for shared counters. Commands never wait in an offline queue: while Redis is
 * unreachable they fail at once (within `commandTimeout`), so callers can decide (fall back for
 * rate limits, refuse for logins) instead of stalling every request.
 */
export async function connectRedis(url: string, options: { timeoutMs?: number } = {}): Promise<Redis> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 1_000,
    connectTimeout: timeoutMs,
    // Reconnect forever in the background, at most every 2 s.
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
  });
  // Connection errors are reported by the commands that fail and by readiness; not as crashes.
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    redis.disconnect();
    const message = error instanceof Error ? error.message : String(error);
    throw new RedisUnavailableError(`Cannot reach Redis at ${redactUrl(url)}: ${message}`);
  }
  return redis;
}

/** Answers whether Redis answers a PING now (readiness). */
export async function redisAnswers(redis: Redis): Promise<boolean> {
  if (redis.status !== 'ready') return false;
  try {
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  }
}
