import type { Redis } from 'ioredis';
import type { Logger } from '../logging/logger.js';

/**
 * Cross-replica word that the persisted settings changed (`PATCH /config` on one replica), on Redis
 * pub/sub: every replica re-reads them at once instead of at its next poll. Polling stays as the
 * fallback (a message lost while a subscriber reconnects is caught up by it), so a missed message
 * only delays a change, never loses it.
 */
export class SettingsChannel {
  readonly #redis: Redis;
  readonly #name: string;
  readonly #logger: Logger;
  #subscriber?: Redis;

  constructor(redis: Redis, keyPrefix: string, logger: Logger) {
    this.#redis = redis;
    this.#name = `${keyPrefix}:settings-changed`;
    this.#logger = logger;
  }

  /** Calls `onChange` whenever a replica publishes; resolves once subscribed. */
  async subscribe(onChange: () => void): Promise<void> {
    // A subscribed connection can do nothing else: a connection of its own (ioredis subscribes it again after a reconnect).
    const subscriber = this.#redis.duplicate({ enableOfflineQueue: true });
    subscriber.on('error', () => undefined);
    subscriber.on('message', (channel: string) => {
      if (channel === this.#name) onChange();
    });
    this.#subscriber = subscriber;
    await subscriber.subscribe(this.#name);
  }

  /** Tells every replica (this one too) that the settings changed; a failure is only logged: polling catches up. */
  publish(): void {
    this.#redis.publish(this.#name, '1').catch((error: unknown) => this.#logger.warn({ err: error }, 'could not announce a settings change on Redis; replicas pick it up at their next poll'));
  }

  close(): void {
    this.#subscriber?.disconnect();
  }
}
