import type { AppContext, AppMiddleware } from './context.js';
import { chunksOf, DISCARD_LIMIT_BYTES, discardRest } from './discard-body.js';
import { ApiError, validationError } from './errors.js';
import { JsonShapeScanner } from './json-shape.js';

/**
 * Reads a JSON body for routes that take one: 415 without `Content-Type: application/json`,
 * 413 above the limit (refused from `Content-Length` before reading, or as soon as the streamed
 * bytes pass it), 400 for malformed JSON, and 400 as soon as the streamed bytes nest deeper or
 * hold more entries than `JSON_LIMITS` allows (the rest is not read, and never parsed).
 */
export function jsonBody(limitBytes: () => number): AppMiddleware {
  return async (ctx, next) => {
    if (!ctx.is('application/json')) {
      // ctx.is answers null when there is no body at all; a JSON route still needs its type.
      throw new ApiError('UNSUPPORTED_MEDIA_TYPE', 'This route takes a JSON body: send Content-Type: application/json');
    }
    const text = (await readBody(ctx, limitBytes(), new JsonShapeScanner())).toString('utf8');
    try {
      ctx.state.input.body = text.length === 0 ? undefined : JSON.parse(text);
    } catch {
      // Not the parser's own message: it quotes the body, which may hold a password.
      throw validationError([{ path: 'body', message: 'Malformed JSON: the body does not parse' }], 'The body is not valid JSON');
    }
    await next();
  };
}

/**
 * The request's body, read once (413 above `limit`) and kept in `ctx.state.rawBody`, so that a
 * middleware (idempotency keys hash it) and the route's `jsonBody` can both have it. Given a
 * `shape` scanner, the bytes are checked as they arrive (or, when already read, at once), and a
 * body that nests too deep or holds too many entries is refused before anything parses it.
 */
export async function readBody(ctx: AppContext, limit: number, shape?: JsonShapeScanner): Promise<Buffer> {
  if (ctx.state.rawBody) {
    // Read first under another middleware's limit: this caller's (maybe tighter) one still holds.
    if (ctx.state.rawBody.length > limit) throw refuse(ctx, limit);
    // Shape-checked as it streamed in already (the idempotency fingerprint): not scanned twice.
    if (shape && !ctx.state.rawBodyShapeChecked) checkShape(ctx, shape, ctx.state.rawBody, limit);
    return ctx.state.rawBody;
  }
  const declared = Number(ctx.get('Content-Length') || NaN);
  if (declared > limit) throw refuse(ctx, limit, declared);
  const chunks: Buffer[] = [];
  let size = 0;
  const take = (chunk: Buffer) => {
    size += chunk.length;
    if (size > limit) throw refuse(ctx, limit);
    if (shape) checkShape(ctx, shape, chunk, limit);
    chunks.push(chunk);
  };
  const { req } = ctx;
  // A body of a declared length that is all here already (most JSON requests: it came with the
  // headers, and the middleware before has awaited) is taken from the stream's buffer at once;
  // iterating the stream would wait a turn or two of the event loop for the end Node signals after
  // it (a streamed completion's first token came 0.07 ms sooner without). The stream is then let
  // run to its end, as the iteration would have.
  if (req.readableLength >= declared && req.readableFlowing !== true) {
    for (let chunk = req.read() as Buffer | null; chunk !== null; chunk = req.read() as Buffer | null) take(chunk);
    req.resume();
  } else for await (const chunk of chunksOf(req)) take(chunk);
  ctx.state.rawBody = Buffer.concat(chunks);
  ctx.state.rawBodyShapeChecked = shape !== undefined;
  return ctx.state.rawBody;
}

function checkShape(ctx: AppContext, shape: JsonShapeScanner, chunk: Buffer, limit: number): void {
  const tooComplex = shape.push(chunk);
  if (!tooComplex) return;
  // The rest is within the body limit: read and dropped (never parsed), so the client gets the answer.
  discardRest(ctx.req, limit);
  throw validationError([{ path: 'body', message: tooComplex }], 'The body is too complex');
}

/**
 * The rest of a refused body is never buffered: a moderate one is read and dropped so the client
 * gets the answer; a huge declared one closes the connection after the answer instead.
 */
function refuse(ctx: AppContext, limit: number, declared?: number): ApiError {
  if (declared !== undefined && declared > DISCARD_LIMIT_BYTES) ctx.set('Connection', 'close');
  else discardRest(ctx.req);
  return new ApiError('PAYLOAD_TOO_LARGE', `The body is larger than the limit of ${limit} bytes`, { limit_bytes: limit });
}
