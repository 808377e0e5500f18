import { ConnectionError, createErrorFromBody } from '../core/errors.js';
import type { RequestOptions } from '../core/options.js';
import { type APIPromise, EventStream, type ResponseMeta } from '../core/response.js';
import { createInference } from '../gen/sdk.gen.js';
import type {
  InferenceDoneEvent,
  InferenceRequest,
  InferenceResponse,
  InferenceTokenEvent,
} from '../gen/types.gen.js';
import { Resource } from './resource.js';

/**
 * The request of {@link InferenceResource}: exactly one of `prompt` (plain completion) and
 * `messages` (chat), and sampling settings. (The spec says "exactly one" in words; the type
 * says it too, so that giving both or neither does not compile.)
 */
export type InferenceParams = Omit<InferenceRequest, 'stream' | 'prompt' | 'messages'> &
  (
    | { prompt: string; messages?: undefined }
    | { messages: NonNullable<InferenceRequest['messages']>; prompt?: undefined }
  );

/** One event of a generation stream: a chunk of text, then the summary. */
export type InferenceStreamEvent =
  | { event: 'token'; data: InferenceTokenEvent }
  | { event: 'done'; data: InferenceDoneEvent };

/** Text generation (`POST /api/v1/inference`, needs `run_inference`). */
export class InferenceResource extends Resource {
  /** Generates the whole completion and returns it with its usage and timings. */
  create(params: InferenceParams, options?: RequestOptions): APIPromise<InferenceResponse> {
    return this.transport.send('createInference', (o) => createInference({ ...o, body: { ...params, stream: false } }), options);
  }

  /**
   * Streams the completion as it is generated (needs `use_streaming` too): `token` events with
   * `{ text }`, then one `done` event with the summary. An error the server reports midway
   * (`event: error`) is thrown as the matching {@link InfernoError}; a stream that ends without
   * its `done` event throws a {@link ConnectionError}, since the completion may be cut short.
   * Leaving the loop early, or aborting `options.signal`, closes the request and so cancels the
   * generation.
   *
   * @example
   * ```ts
   * for await (const event of client.inference.stream({ model: 'demo-tiny', prompt: 'Once' })) {
   *   if (event.event === 'token') process.stdout.write(event.data.text);
   * }
   * ```
   */
  stream(params: InferenceParams, options?: RequestOptions): EventStream<InferenceStreamEvent> {
    const events = this.transport.stream<unknown>(
      'createInference',
      (o) => createInference({ ...o, body: { ...params, stream: true } as InferenceRequest }),
      options,
    );
    const read = async function* (meta: ResponseMeta): AsyncGenerator<InferenceStreamEvent, void, undefined> {
      let done = false;
      for await (const event of events) {
        // The error event comes on a 200 response: its request id is the response's.
        if (event.event === 'error') throw createErrorFromBody(event.data, meta.headers);
        if (event.event === 'done') done = true;
        if (event.event === 'token' || event.event === 'done') yield event as InferenceStreamEvent;
      }
      // A proxy or a crashed server can end the body cleanly midway: without `done`, the text may be incomplete.
      if (!done) {
        throw new ConnectionError('The stream ended before its done event: the completion may be incomplete', { requestId: meta.requestId });
      }
    };
    return new EventStream(async () => (await events.withResponse()), read);
  }
}
