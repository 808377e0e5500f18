import type { AppContext } from './context.js';

/**
 * A server-sent event stream on the raw response. Headers already set on the context (request
 * id, rate limits, CORS) go out with it, in the first write (see `open`). `closed` turns true when
 * the client goes away.
 *
 * The first event goes out at once (with the status and headers: the time to first token). Later
 * ones are coalesced: whatever is sent during one turn of the event loop goes out in one write,
 * from a `setImmediate`. A token's event is then written while llama.cpp already decodes the next
 * token (the decode loop queues that decode in the same turn as it hands the token over), instead
 * of the write's system call holding the decode back; and tokens that arrive before the write are
 * sent with it. Every event is complete and in order; `end()` writes what is left first.
 */
export class EventStream {
  readonly #res: AppContext['res'];
  #heartbeat?: NodeJS.Timeout;
  #pending = '';
  #scheduled = false;

  constructor(ctx: AppContext) {
    this.#res = ctx.res;
    ctx.status = 200;
    ctx.respond = false;
    this.#res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    this.#res.setHeader('Cache-Control', 'no-cache, no-transform');
    this.#res.setHeader('X-Accel-Buffering', 'no'); // proxies must not hold events back
    this.#res.socket?.setNoDelay(true);
  }

  /**
   * Sends the status and headers now. Without it they go out with the first event, in the same
   * write (one system call and one packet fewer before the first token); a caller that will be
   * silent for a while (waiting for a model to load) opens the stream at once instead.
   */
  open(): void {
    if (!this.#res.headersSent && !this.closed) this.#res.flushHeaders();
  }

  get closed(): boolean {
    return this.#res.writableEnded || this.#res.destroyed;
  }

  /** A named event (the native API's `event: token`, `event: done`...). */
  send(event: string, data: unknown): void {
    this.#queue(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** An unnamed event, `data:` only (OpenAI's streams); a string is sent as it is (`[DONE]`). */
  data(data: unknown): void {
    this.#queue(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  }

  comment(text: string): void {
    this.#queue(`: ${text}\n\n`);
  }

  #queue(text: string): void {
    if (this.closed) return;
    if (!this.#res.headersSent) {
      this.#res.write(text);
      return;
    }
    this.#pending += text;
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#flush);
  }

  readonly #flush = () => {
    this.#scheduled = false;
    const pending = this.#pending;
    this.#pending = '';
    if (pending && !this.closed) this.#res.write(pending);
  };

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

  /** Ends the response, with whatever events are still waiting in the same write. */
  end(): void {
    this.stopHeartbeat();
    const pending = this.#pending;
    this.#pending = '';
    if (!this.closed) this.#res.end(pending || undefined);
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
