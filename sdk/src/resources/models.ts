import type { RequestOptions } from '../core/options.js';
import { APIPromise, type CallMode, type WithResponse } from '../core/response.js';
import { deleteModel, getModel, listModels, loadModel, unloadModel, uploadModel } from '../gen/sdk.gen.js';
import type { Model, ModelList } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/**
 * What {@link ModelsResource.upload} accepts: a file path (Node only; the file is streamed from
 * disk, never read into memory), a `Blob` (in Node `await fs.openAsBlob(path)` is file-backed too),
 * bytes, or a stream of bytes. A stream is sent as it is read where the runtime can stream a
 * request body (Node, Deno); elsewhere it is collected first. A stream can be read once, so an
 * upload from one is not retried; paths, Blobs and bytes are.
 */
export type ModelFile = string | Blob | ArrayBuffer | ArrayBufferView | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

/** The arguments of {@link ModelsResource.upload}. */
export interface UploadModelParams {
  /** The id to store the model under (its file becomes `<id>.gguf`). */
  id: string;
  /** The GGUF file. */
  file: ModelFile;
  /** Replace an existing model with this id. Default `false`. */
  overwrite?: boolean | undefined;
  /**
   * Called as the body is sent, with the bytes sent so far and the total when known (not for a
   * stream). With a stream body this counts what has been handed to the connection.
   */
  onProgress?: ((progress: { sent: number; total: number | undefined }) => void) | undefined;
}

// A variable specifier keeps bundlers from pulling `node:fs` into browser builds.
const NODE_FS = 'node:fs';

type Source = { kind: 'blob'; blob: Blob } | { kind: 'stream'; stream: ReadableStream<Uint8Array> };

async function toSource(file: ModelFile): Promise<Source> {
  if (typeof file === 'string') {
    const fs = (await import(/* @vite-ignore */ /* webpackIgnore: true */ NODE_FS)) as { openAsBlob(path: string): Promise<Blob> };
    return { kind: 'blob', blob: await fs.openAsBlob(file) };
  }
  if (file instanceof Blob) return { kind: 'blob', blob: file };
  if (file instanceof ArrayBuffer || ArrayBuffer.isView(file)) return { kind: 'blob', blob: new Blob([file as BlobPart]) };
  const stream = file instanceof ReadableStream ? file : iterableStream(file);
  if (supportsRequestStreams()) return { kind: 'stream', stream };
  // No streamed request bodies here (browsers over HTTP/1.1): collect the bytes.
  const parts: BlobPart[] = [];
  const reader = stream.getReader();
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) parts.push(chunk.value as BlobPart);
  return { kind: 'blob', blob: new Blob(parts) };
}

function iterableStream(source: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const iterator = source[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await iterator.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel(reason) {
      await iterator.return?.(reason);
    },
  });
}

let requestStreams: boolean | undefined;
/** Whether `fetch` can send a ReadableStream body (`duplex: 'half'`), as Node and Deno can. */
function supportsRequestStreams(): boolean {
  if (requestStreams !== undefined) return requestStreams;
  let duplexAsked = false;
  try {
    const init = { body: new ReadableStream(), method: 'POST', get duplex() { duplexAsked = true; return 'half'; } };
    const typed = new Request('http://localhost/', init as RequestInit).headers.has('Content-Type');
    requestStreams = duplexAsked && !typed;
  } catch {
    requestStreams = false;
  }
  return requestStreams;
}

/** Counts the bytes of `stream` as they are read. */
function counted(stream: ReadableStream<Uint8Array>, total: number | undefined, onProgress: NonNullable<UploadModelParams['onProgress']>): ReadableStream<Uint8Array> {
  let sent = 0;
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        sent += chunk.byteLength;
        controller.enqueue(chunk);
        onProgress({ sent, total });
      },
    }),
  );
}

/** The GGUF models the server can run (`/api/v1/models`). */
export class ModelsResource extends Resource {
  /** `GET /api/v1/models`: every model in the server's models directory (`read_models`). */
  list(options?: RequestOptions): APIPromise<ModelList> {
    return this.transport.send('listModels', (o) => listModels(o), options);
  }

  /** `GET /api/v1/models/{id}`: one model, by id (its file name without `.gguf`; `read_models`). */
  get(id: string, options?: RequestOptions): APIPromise<Model> {
    return this.transport.send('getModel', (o) => getModel({ ...o, path: { id } }), options);
  }

  /**
   * `POST /api/v1/models`: uploads a GGUF file under `id` (`write_models`), from a path (Node),
   * a `Blob`, bytes or a stream, without reading it whole into memory where the runtime can
   * stream it. Give big uploads a `timeout` to match.
   *
   * @example
   * ```ts
   * await client.models.upload(
   *   { id: 'my-model', file: './models/my-model.gguf', onProgress: ({ sent, total }) => console.log(sent, total) },
   *   { timeout: 600_000 },
   * );
   * ```
   */
  upload(params: UploadModelParams, options?: RequestOptions): APIPromise<Model> {
    const { id, file, overwrite, onProgress } = params;
    const query = overwrite === undefined ? { id } : { id, overwrite };
    const mode: CallMode = { raw: false };
    const result = toSource(file).then((source) => {
      let used = false;
      const body = (): Blob | ReadableStream<Uint8Array> => {
        if (source.kind === 'blob') {
          return onProgress ? counted(source.blob.stream(), source.blob.size, onProgress) : source.blob;
        }
        if (used) throw new TypeError('An upload from a stream cannot be sent again: the stream has been read');
        used = true;
        return onProgress ? counted(source.stream, undefined, onProgress) : source.stream;
      };
      // A stream can be sent once: no retries for it.
      const streamed = source.kind === 'stream';
      const callOptions = streamed ? { ...options, maxRetries: 0 } : options;
      return this.transport.request(
        'uploadModel',
        (o) => {
          const payload = body();
          const extra = payload instanceof ReadableStream ? { duplex: 'half' } : {};
          return uploadModel({ ...o, ...extra, body: payload as unknown as Blob, query });
        },
        callOptions,
        mode,
      );
    });
    return new APIPromise(result as Promise<WithResponse<Model>>, mode);
  }

  /** `DELETE /api/v1/models/{id}`: deletes the file, unloading the model first (`delete_models`). */
  delete(id: string, options?: RequestOptions): APIPromise<void> {
    return this.transport.send('deleteModel', (o) => deleteModel({ ...o, path: { id } }), options);
  }

  /** `POST /api/v1/models/{id}/load`: loads the model now rather than on first use (`write_models`). */
  load(id: string, options?: RequestOptions): APIPromise<Model> {
    return this.transport.send('loadModel', (o) => loadModel({ ...o, path: { id } }), options);
  }

  /** `POST /api/v1/models/{id}/unload`: frees the model's memory (`write_models`). */
  unload(id: string, options?: RequestOptions): APIPromise<Model> {
    return this.transport.send('unloadModel', (o) => unloadModel({ ...o, path: { id } }), options);
  }
}
