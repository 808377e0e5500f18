import type { Server } from 'node:http';
import type { AppMiddleware } from './context.js';
import { ApiError } from './errors.js';

/**
 * The graceful-shutdown state: requests in flight, and whether the server is draining. While it
 * drains, every new request is answered 503 `SERVICE_UNAVAILABLE` with `Retry-After` and
 * `Connection: close`, so clients and load balancers move on while running work finishes.
 */
export class Drain {
  #endsAt: number | undefined;
  #active = 0;
  #waiters: (() => void)[] = [];

  get draining(): boolean {
    return this.#endsAt !== undefined;
  }

  get active(): number {
    return this.#active;
  }

  /** Counts the server's requests from arrival until their response is closed. */
  track(server: Server): void {
    // A response closes once: a plain listener (no `once` wrapper), and one function for all of them.
    const closed = () => {
      this.#active--;
      if (this.#active === 0) for (const wake of this.#waiters.splice(0)) wake();
    };
    server.on('request', (_req, res) => {
      this.#active++;
      res.on('close', closed);
    });
  }

  begin(graceMs: number): void {
    this.#endsAt ??= Date.now() + graceMs;
  }

  /** Resolves true once no request is in flight, or false after `timeoutMs`. */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.#active === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== wake);
        resolve(false);
      }, timeoutMs);
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.#waiters.push(wake);
    });
  }

  /** Refuses new requests during the drain. */
  middleware(): AppMiddleware {
    return (ctx, next) => {
      if (this.#endsAt === undefined) return next();
      ctx.set('Connection', 'close');
      const retryAfter = Math.max(1, Math.ceil((this.#endsAt - Date.now()) / 1000));
      throw new ApiError('SERVICE_UNAVAILABLE', 'The server is shutting down; retry in a moment', null, { 'Retry-After': String(retryAfter) });
    };
  }
}
