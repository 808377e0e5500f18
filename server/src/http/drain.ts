import type { IncomingMessage, Server, ServerResponse } from 'node:http';
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
  #handlers = 0;
  #handlerWaiters: (() => void)[] = [];

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
    return waitFor(this.#active, this.#waiters, timeoutMs);
  }

  /**
   * Resolves true once no request handler is running, or false after `timeoutMs`. A cut connection
   * closes its response at once while its handler runs on (a password check, a store write): the
   * server waits for these before it closes what they use.
   */
  whenHandlersDone(timeoutMs: number): Promise<boolean> {
    return waitFor(this.#handlers, this.#handlerWaiters, timeoutMs);
  }

  /**
   * Counts the handlers of `callback` (the app's request handler) while they run: a cut connection
   * closes its response at once, but its handler runs on.
   */
  counting(callback: (req: IncomingMessage, res: ServerResponse) => Promise<void>): (req: IncomingMessage, res: ServerResponse) => void {
    const done = () => {
      if (--this.#handlers === 0) for (const wake of this.#handlerWaiters.splice(0)) wake();
    };
    return (req, res) => {
      this.#handlers++;
      callback(req, res).then(done, done);
    };
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

function waitFor(count: number, waiters: (() => void)[], timeoutMs: number): Promise<boolean> {
  if (count === 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      const at = waiters.indexOf(wake);
      if (at >= 0) waiters.splice(at, 1);
      resolve(false);
    }, timeoutMs);
    const wake = () => {
      clearTimeout(timer);
      resolve(true);
    };
    waiters.push(wake);
  });
}
