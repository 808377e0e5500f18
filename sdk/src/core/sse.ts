// Server-Sent Events: a parser for the wire format and a reader that turns a response body into
// events, with an idle timeout. Browser-safe (TextDecoder, ReadableStream, timers).

import { TimeoutError } from './errors.js';

/** One event of a stream: its name (`message` when the server gave none) and its data. */
export interface ServerSentEvent<TData = unknown> {
  /** The `event:` field, or `message`. */
  event: string;
  /** The `data:` field parsed as JSON; the raw text when it is not JSON. */
  data: TData;
  /** The `id:` field, when the server sent one. */
  id?: string;
}

/** An event as it came over the wire, its data still text. */
export interface RawServerSentEvent {
  /** The `event:` field, or `message`. */
  event: string;
  /** The `data:` lines, joined with newlines. */
  data: string;
  /** The `id:` field, when the server sent one. */
  id?: string;
}

/**
 * Incremental parser of the `text/event-stream` format: feed it text as it arrives, get the
 * events completed so far. Comments (`: heartbeat`) and unknown fields are skipped; an event is
 * complete at a blank line; lines may end in LF, CRLF or CR, split anywhere across chunks.
 */
export class SseParser {
  #buffer = '';
  #event = '';
  #data: string[] = [];
  #id: string | undefined;

  /** Feeds a chunk of text; returns the events it completed. */
  push(chunk: string): RawServerSentEvent[] {
    this.#buffer += chunk;
    const events: RawServerSentEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.#buffer.length; i++) {
      const char = this.#buffer[i];
      if (char !== '\n' && char !== '\r') continue;
      // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
      if (char === '\r' && i === this.#buffer.length - 1) break;
      const line = this.#buffer.slice(start, i);
      if (char === '\r' && this.#buffer[i + 1] === '\n') i++;
      start = i + 1;
      const event = this.#line(line);
      if (event) events.push(event);
    }
    this.#buffer = this.#buffer.slice(start);
    return events;
  }

  /** At the end of the stream: a trailing CR ends its line; an event without its blank line is dropped, as the format says. */
  end(): RawServerSentEvent[] {
    const rest = this.#buffer.endsWith('\r') ? this.#buffer.slice(0, -1) : '';
    this.#buffer = '';
    if (rest) this.#line(rest);
    return [];
  }

  #line(line: string): RawServerSentEvent | undefined {
    if (line === '') return this.#dispatch();
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.#event = value;
        break;
      case 'data':
        this.#data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.#id = value;
        break;
      default:
        break;
    }
    return undefined;
  }

  #dispatch(): RawServerSentEvent | undefined {
    const event = this.#event || 'message';
    const data = this.#data;
    this.#event = '';
    this.#data = [];
    if (data.length === 0) return undefined;
    const raw: RawServerSentEvent = { event, data: data.join('\n') };
    if (this.#id !== undefined) raw.id = this.#id;
    return raw;
  }
}

/** Parses an event's data as JSON, keeping the text when it is not JSON. */
export function decodeEvent<TData>(raw: RawServerSentEvent): ServerSentEvent<TData> {
  let data: unknown;
  try {
    data = JSON.parse(raw.data);
  } catch {
    data = raw.data;
  }
  const event: ServerSentEvent<TData> = { event: raw.event, data: data as TData };
  if (raw.id !== undefined) event.id = raw.id;
  return event;
}

/** Options of {@link readServerSentEvents}. */
export interface ReadEventsOptions {
  /**
   * Fail when nothing at all (not even a comment) arrives for this long, in milliseconds; `0`
   * (or any value that is not a finite number above 0) waits for ever.
   */
  idleTimeout: number;
  /** Called when the idle timeout hits, before the TimeoutError is thrown: abort the request there. */
  onIdle?: () => void;
}

/**
 * Reads a `text/event-stream` body and yields its events as they complete. Throws a
 * {@link TimeoutError} when the body stalls for `idleTimeout`; stopping early (a `break` in
 * `for await`) cancels the body.
 */
export async function* readServerSentEvents(
  body: ReadableStream<Uint8Array>,
  options: ReadEventsOptions,
): AsyncGenerator<RawServerSentEvent, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await readWithin(reader, options);
      if (done) {
        yield* parser.push(decoder.decode());
        yield* parser.end();
        finished = true;
        return;
      }
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    if (!finished) reader.cancel().catch(() => undefined);
    try {
      reader.releaseLock();
    } catch {
      // Older stream implementations refuse while a read is pending; the cancel above ends it anyway.
    }
  }
}

async function readWithin(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  options: ReadEventsOptions,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  // Any bytes end the wait, a comment (`: keep-alive`) as much as an event: the timer starts
  // afresh for every read.
  if (!(options.idleTimeout > 0 && Number.isFinite(options.idleTimeout))) return reader.read();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let idle: TimeoutError | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      idle = new TimeoutError(`The stream sent nothing for ${options.idleTimeout} ms`, options.idleTimeout);
      reject(idle);
      options.onIdle?.();
    }, options.idleTimeout);
  });
  try {
    return await Promise.race([reader.read(), stalled]);
  } catch (error) {
    // Aborting the request in onIdle also fails the read; the timeout is what happened.
    throw idle ?? error;
  } finally {
    clearTimeout(timer);
  }
}
