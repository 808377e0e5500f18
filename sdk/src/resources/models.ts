import type { RequestOptions } from '../core/options.js';
import { deleteModel, getModel, listModels, loadModel, unloadModel, uploadModel } from '../gen/sdk.gen.js';
import type { Model, ModelList } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/**
 * What {@link ModelsResource.upload} accepts: a file path (Node only; the file is streamed from
 * disk, never read into memory), a `Blob` (in Node `await fs.openAsBlob(path)` is file-backed too),
 * bytes, or a stream of bytes (collected first, so that a retry can send them again).
 */
export type ModelFile = string | Blob | ArrayBuffer | ArrayBufferView | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

// A variable specifier keeps bundlers from pulling `node:fs` into browser builds.
const NODE_FS = 'node:fs';

async function toBlob(file: ModelFile): Promise<Blob> {
  if (typeof file === 'string') {
    const fs = (await import(/* @vite-ignore */ /* webpackIgnore: true */ NODE_FS)) as { openAsBlob(path: string): Promise<Blob> };
    return fs.openAsBlob(file);
  }
  if (file instanceof Blob) return file;
  if (file instanceof ArrayBuffer || ArrayBuffer.isView(file)) return new Blob([file as BlobPart]);
  const parts: BlobPart[] = [];
  if (file instanceof ReadableStream) {
    const reader = file.getReader();
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) parts.push(chunk.value as BlobPart);
  } else {
    for await (const chunk of file) parts.push(chunk as BlobPart);
  }
  return new Blob(parts);
}

/** The GGUF models the server can run (`/api/v1/models`). */
export class ModelsResource extends Resource {
  /** `GET /api/v1/models`: every model in the server's models directory (`read_models`). */
  list(options?: RequestOptions): Promise<ModelList> {
    return this.transport.send('listModels', (o) => listModels(o), options);
  }

  /** `GET /api/v1/models/{id}`: one model, by id (its file name without `.gguf`; `read_models`). */
  get(id: string, options?: RequestOptions): Promise<Model> {
    return this.transport.send('getModel', (o) => getModel({ ...o, path: { id } }), options);
  }

  /**
   * `POST /api/v1/models`: uploads a GGUF file under `id` (`write_models`), from a path (Node),
   * a `Blob`, bytes or a stream. Give big uploads a `timeout` to match.
   *
   * @example
   * ```ts
   * await client.models.upload('my-model', './models/my-model.gguf', {}, { timeout: 600_000 });
   * ```
   */
  async upload(id: string, file: ModelFile, query: { overwrite?: boolean } = {}, options?: RequestOptions): Promise<Model> {
    const body = await toBlob(file);
    return this.transport.send(
      'uploadModel',
      (o) => uploadModel({ ...o, body, query: { id, ...query } }),
      options,
    );
  }

  /** `DELETE /api/v1/models/{id}`: deletes the file, unloading the model first (`delete_models`). */
  delete(id: string, options?: RequestOptions): Promise<void> {
    return this.transport.send('deleteModel', (o) => deleteModel({ ...o, path: { id } }), options);
  }

  /** `POST /api/v1/models/{id}/load`: loads the model now rather than on first use (`write_models`). */
  load(id: string, options?: RequestOptions): Promise<Model> {
    return this.transport.send('loadModel', (o) => loadModel({ ...o, path: { id } }), options);
  }

  /** `POST /api/v1/models/{id}/unload`: frees the model's memory (`write_models`). */
  unload(id: string, options?: RequestOptions): Promise<Model> {
    return this.transport.send('unloadModel', (o) => unloadModel({ ...o, path: { id } }), options);
  }
}
