// What a call returns: a promise of its data that also offers the response's metadata
// (`withResponse()`, `asResponse()`), pages that fetch the next one, and event streams that tell
// their response. Browser-safe.

import type { RateLimitInfo } from './rate-limit.js';

/** The metadata of the response a call got. */
export interface ResponseMeta {
  /** The response itself. Its body has been read unless it came from `asResponse()` or a stream. */
  response: Response;
  /** The HTTP status. */
  status: number;
  /** The response headers. */
  headers: Headers;
  /** The server's `X-Request-Id`, to quote when reporting a problem. */
  requestId: string | undefined;
  /** The rate-limit headers of the response, when it had them. */
  rateLimit: RateLimitInfo | undefined;
}

/** A call's data with the metadata of its response. */
export interface WithResponse<T> extends ResponseMeta {
  /** What the call resolves to. */
  data: T;
}

/** Switches a call to leave the body unread, for {@link APIPromise.asResponse}. */
export interface CallMode {
  /** Set before the request goes out: the transport then does not read the body. */
  raw: boolean;
}

const noop = () => undefined;

/**
 * The promise every method returns: await it for the data, as usual, or ask for more:
 *
 * - `withResponse()` resolves to the data with the response's status, headers, request id and
 *   rate limit;
 * - `asResponse()` resolves to the raw `Response`, its body unread. Call it right away (in the
 *   same expression as the method): it has to be asked before the request goes out.
 *
 * Errors are thrown by all three alike.
 *
 * @example
 * ```ts
 * const { data: models, requestId, rateLimit } = await client.models.list().withResponse();
 * ```
 */
export class APIPromise<T> extends Promise<T> {
  // then/catch/finally give plain promises, not APIPromises.
  static override get [Symbol.species](): PromiseConstructor {
    return Promise;
  }

  readonly #meta: Promise<WithResponse<T>>;
  readonly #mode: CallMode;
  #data: Promise<T> | undefined;

  /** @internal Built by the transport. */
  constructor(meta: Promise<WithResponse<T>>, mode: CallMode) {
    // The promise itself is a shell: then/catch/finally read the data from `meta`, on first use.
    super(settleShell);
    this.#meta = meta;
    this.#mode = mode;
    // Whichever of the three the caller awaits sees the error; the others are never made, and a
    // call nobody awaits must not be reported as an unhandled rejection.
    meta.catch(noop);
  }

  /** The data with the response's status, headers, request id and rate limit. */
  withResponse(): Promise<WithResponse<T>> {
    return this.#meta;
  }

  /** The raw `Response`, its body unread (ask right away, before the request goes out). Error statuses still throw. */
  asResponse(): Promise<Response> {
    this.#mode.raw = true;
    return this.#meta.then(responseOf);
  }

  /** Settles with the call's data, or its error. */
  override then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.#dataPromise().then(onfulfilled, onrejected);
  }

  /** Settles with the call's data, or what `onrejected` makes of its error. */
  override catch<R = never>(onrejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<T | R> {
    return this.#dataPromise().catch(onrejected);
  }

  /** Settles like the call, after `onfinally`. */
  override finally(onfinally?: (() => void) | null): Promise<T> {
    return this.#dataPromise().finally(onfinally);
  }

  #dataPromise(): Promise<T> {
    return (this.#data ??= this.#meta.then(dataOf));
  }
}

function settleShell(resolve: (value: never) => void): void {
  resolve(undefined as never);
}

function dataOf<T>(result: WithResponse<T>): T {
  return result.data;
}

function responseOf(result: ResponseMeta): Response {
  return result.response;
}

/** The body of a page of a cursor-paginated list. */
export interface PageBody<T> {
  /** The items of this page. */
  data: T[];
  /** Pass as `cursor` for the next page; null on the last page. */
  next_cursor: string | null;
}

/**
 * One page of a list: its `data` and `next_cursor`, as the API sends them, plus the way to the
 * next page. Iterating it (`for await`) yields its items and those of every later page.
 */
export class Page<T> implements PageBody<T>, AsyncIterable<T> {
  /** The items of this page. */
  readonly data: T[];
  /** Pass as `cursor` for the next page; null on the last page. */
  readonly next_cursor: string | null;
  readonly #next: (cursor: string) => PagePromise<T>;

  /** @internal Built by the resources. */
  constructor(body: PageBody<T>, next: (cursor: string) => PagePromise<T>) {
    this.data = body.data;
    this.next_cursor = body.next_cursor;
    this.#next = next;
  }

  /** Whether there is a page after this one. */
  hasNextPage(): boolean {
    return this.next_cursor !== null && this.next_cursor !== '';
  }

  /** Fetches the next page; throws when there is none (check {@link Page.hasNextPage}). */
  getNextPage(): PagePromise<T> {
    if (!this.hasNextPage()) throw new RangeError('This is the last page: there is no next page');
    return this.#next(this.next_cursor!);
  }

  /** This page and every later one, fetched as the loop gets to them. */
  async *pages(): AsyncGenerator<Page<T>, void, undefined> {
    let page: Page<T> = this;
    for (;;) {
      yield page;
      if (!page.hasNextPage()) return;
      page = await page.getNextPage();
    }
  }

  /** The items of this page and of every later one. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for await (const page of this.pages()) yield* page.data;
  }
}

/**
 * What a list method returns: await it for the first {@link Page}, or iterate it (`for await`)
 * for every item of every page; `pages()` iterates page by page.
 *
 * @example
 * ```ts
 * for await (const job of client.jobs.list({ limit: 50 })) console.log(job.id, job.status);
 * ```
 */
export class PagePromise<T> extends APIPromise<Page<T>> implements AsyncIterable<T> {
  /** Every page, from this one on. */
  async *pages(): AsyncGenerator<Page<T>, void, undefined> {
    yield* (await this).pages();
  }

  /** Every item of every page. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    yield* await this;
  }
}

/**
 * An event stream: iterate it (`for await`) for its events, once. The request goes out at the
 * first event asked for, or at `withResponse()`, which resolves once the response's headers are
 * in; from then on `response`, `headers` and `requestId` tell them.
 */
export class EventStream<T> implements AsyncIterable<T> {
  readonly #open: () => Promise<ResponseMeta>;
  readonly #events: (meta: ResponseMeta) => AsyncGenerator<T, void, undefined>;
  #opened: Promise<ResponseMeta> | undefined;
  #meta: ResponseMeta | undefined;
  #iterated = false;

  /** @internal Built by the transport. */
  constructor(open: () => Promise<ResponseMeta>, events: (meta: ResponseMeta) => AsyncGenerator<T, void, undefined>) {
    this.#open = open;
    this.#events = events;
  }

  /** The response, once its headers arrived. */
  get response(): Response | undefined {
    return this.#meta?.response;
  }

  /** The response headers, once they arrived. */
  get headers(): Headers | undefined {
    return this.#meta?.headers;
  }

  /** The server's `X-Request-Id`, once the response's headers arrived. */
  get requestId(): string | undefined {
    return this.#meta?.requestId;
  }

  /** Sends the request (if not yet) and resolves with the stream and its response's metadata once the headers are in. */
  async withResponse(): Promise<WithResponse<this>> {
    const meta = await this.#start();
    return { ...meta, data: this };
  }

  /** The events. A stream can be iterated once; leaving the loop early closes the request. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    if (this.#iterated) throw new TypeError('This stream has already been iterated; a stream can be read once');
    this.#iterated = true;
    yield* this.#events(await this.#start());
  }

  #start(): Promise<ResponseMeta> {
    this.#opened ??= this.#open().then((meta) => (this.#meta = meta));
    return this.#opened;
  }
}
