import type { RequestOptions } from '../core/options.js';
import type { APIPromise } from '../core/response.js';
import { createEmbeddings } from '../gen/sdk.gen.js';
import type { EmbeddingsRequest, EmbeddingsResponse } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** Embeddings (`POST /api/v1/embeddings`, needs `run_inference`). */
export class EmbeddingsResource extends Resource {
  /** Embeds one text or a list of texts: one vector per input, in input order. */
  create(body: EmbeddingsRequest, options?: RequestOptions): APIPromise<EmbeddingsResponse> {
    return this.transport.send('createEmbeddings', (o) => createEmbeddings({ ...o, body }), options);
  }
}
