import type { Logger } from '../logging/logger.js';
import type { UsageDelta, UsageStore } from '../store/types.js';

const HOUR_MS = 3_600_000;

/** What one answered request used. */
export interface UsageEvent {
  userId: string;
  /** The API key the request came with; null for a login session (or a batch job). */
  keyId: string | null;
  model: string;
  promptTokens: number;
  completionTokens: number;
}

/**
 * Usage accounting without a store round trip per request: events are summed in memory per hour,
 * user, key and model, and written as one batch every `flushIntervalMs` (and on `flush`, which
 * the usage route and shutdown call). A failed write keeps its sums for the next flush.
 */
export class UsageRecorder {
  #pending = new Map<string, UsageDelta>();
  #flushing: Promise<void> = Promise.resolve();
  #timer?: NodeJS.Timeout;

  constructor(
    private readonly store: UsageStore,
    private readonly logger: Logger,
    private readonly options: { enabled: () => boolean; flushIntervalMs: number },
  ) {}

  start(): void {
    this.#timer ??= setInterval(() => void this.flush(), this.options.flushIntervalMs);
    this.#timer.unref();
  }

  record(event: UsageEvent, at = Date.now()): void {
    if (!this.options.enabled()) return;
    const bucket = new Date(Math.floor(at / HOUR_MS) * HOUR_MS).toISOString();
    const id = `${bucket}\n${event.userId}\n${event.keyId ?? ''}\n${event.model}`;
    const delta = this.#pending.get(id);
    if (delta) {
      delta.requests++;
      delta.promptTokens += event.promptTokens;
      delta.completionTokens += event.completionTokens;
    } else {
      this.#pending.set(id, { bucket, userId: event.userId, keyId: event.keyId, model: event.model, requests: 1, promptTokens: event.promptTokens, completionTokens: event.completionTokens });
    }
  }

  /** Writes what has been recorded so far; resolves once it (and any flush before it) is stored. */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      if (this.#pending.size === 0) return;
      const batch = this.#pending;
      this.#pending = new Map();
      try {
        await this.store.addUsage([...batch.values()]);
      } catch (error) {
        this.logger.error({ err: error, rows: batch.size }, 'usage accounting: writing a batch failed; it is kept for the next flush');
        for (const [id, delta] of batch) {
          const newer = this.#pending.get(id);
          if (newer) {
            newer.requests += delta.requests;
            newer.promptTokens += delta.promptTokens;
            newer.completionTokens += delta.completionTokens;
          } else this.#pending.set(id, delta);
        }
      }
    });
    return this.#flushing;
  }

  /** Stops the timer and writes what is left. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }
}
