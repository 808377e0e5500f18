import type { AppContext } from './context.js';

/**
 * A server-sent event stream on the raw response. Headers already set on the context (request
 * id, rate limits, CORS) go out with it. `closed` turns true when the client goes away.
 */
export class EventStream {
  readonly #res: AppContext['res'];
  #heartbeat?: NodeJS.Timeout;

  constructor(ctx: AppContext) {
    this.#res = ctx.res;
    ctx.status = 200;
    ctx.respond = false;
    this.#res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    this.#res.setHeader('Cache-Control', 'no-cache, no-transform');
    this.#res.setHeader('X-Accel-Buffering', 'no'); // proxies must not hold events back
    this.#res.flushHeaders();
    this.#res.socket?.setNoDelay(true);
  }

  get closed(): boolean {
    return this.#res.writableEnded || this.#res.destroyed;
  }

  send(event: string, data: unknown): void {
    if (!this.closed) this.#res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  comment(text: string): void {
    if (!this.closed) this.#res.write(`: ${text}\n\n`);
  }

  /** Sends a comment every `everyMs` until stopped, so idle proxies and clients keep the stream open. */
  startHeartbeat(everyMs: number): void {
    this.stopHeartbeat();
    this.#heartbeat = setInterval(() => this.comment('keep-alive'), everyMs);
    this.#heartbeat.unref();
  }

  stopHeartbeat(): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  end(): void {
    this.stopHeartbeat();
    if (!this.closed) this.#res.end();
  }
}

/** The stream already told the client what went wrong; the error handler has nothing to add. */
export class StreamClosedError extends Error {
  override name = 'StreamClosedError';
  constructor(readonly reason: unknown) {
    super('The event stream ended with an error event');
  }
}

/** An AbortSignal that fires when the client closes the connection before the response is done. */
export function clientGone(ctx: AppContext): AbortSignal {
  const controller = new AbortController();
  ctx.res.once('close', () => {
    if (!ctx.res.writableFinished) controller.abort(new Error('The client closed the connection'));
  });
  return controller.signal;
}
