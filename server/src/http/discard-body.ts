import type { IncomingMessage } from 'node:http';

/** How much of a refused body is read and thrown away so that the client sees the answer. */
export const DISCARD_LIMIT_BYTES = 8 * 1024 * 1024;

/**
 * After refusing a body part-way (413, bad upload), reads and drops the rest instead of closing
 * the socket under a client that is still sending, which would lose the answer to a broken pipe.
 * A client that keeps sending past `maxBytes` is cut off.
 */
export function discardRest(req: IncomingMessage, maxBytes = DISCARD_LIMIT_BYTES): void {
  let discarded = 0;
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > maxBytes) req.socket.destroy();
  });
  req.resume();
}

/** Reads a request without destroying it when the reader stops early (see `discardRest`). */
export function chunksOf(req: IncomingMessage): AsyncIterable<Buffer> {
  return req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
}
