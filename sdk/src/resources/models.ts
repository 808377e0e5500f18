import type { RequestOptions } from '../core/options.js';
import { deleteModel, getModel, listModels, loadModel, unloadModel, uploadModel } from '../gen/sdk.gen.js';
import type { Model, ModelList } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** What {@link ModelsResource.upload} accepts: the GGUF file's bytes. */
export type ModelFile = Blob | ArrayBuffer | ArrayBufferView;

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
   * `POST /api/v1/models`: uploads a GGUF file under `id` (`write_models`). In Node, pass a big
   * file without reading it into memory with `await fs.openAsBlob(path)`; give such uploads a
   * `timeout` to match.
   */
  upload(id: string, file: ModelFile, query: { overwrite?: boolean } = {}, options?: RequestOptions): Promise<Model> {
    const body = file instanceof Blob ? file : new Blob([file as BlobPart]);
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
