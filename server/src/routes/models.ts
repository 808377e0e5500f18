import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { Router } from '@koa/router';
import { createRouter } from '../http/router.js';
import type { ResponseCache } from '../cache/response-cache.js';
import type { UploadModelData } from '../gen/types.gen.js';
import { zDeleteModelPath, zGetModelPath, zLoadModelPath, zUnloadModelPath, zUploadModelQuery } from '../gen/zod.gen.js';
import type { InferenceEngine } from '../engine/engine.js';
import type { ModelCatalog } from '../engine/model-catalog.js';
import { InvalidModelFileError, ModelExistsError, receiveModelUpload, UploadTooLargeError } from '../engine/model-upload.js';
import { audit } from '../http/audit.js';
import { chunksOf, DISCARD_LIMIT_BYTES, discardRest } from '../http/discard-body.js';
import { requireAuth, requirePermission } from '../http/authenticate.js';
import type { AppContext, AppState } from '../http/context.js';
import { ApiError, conflict, notFound, validationError } from '../http/errors.js';
import { validate } from '../http/validate.js';
import type { RouteDeps } from './deps.js';
import { engineError } from './inference.js';

export function modelRoutes(deps: RouteDeps, catalog: ModelCatalog, engine: InferenceEngine, cache: ResponseCache): Router<AppState> {
  const { store, config } = deps;
  const router = createRouter();
  const can = (permission: Parameters<typeof requirePermission>[1]) => [requireAuth, requirePermission(store, permission)];

  const findModel = async (ctx: AppContext) => {
    const { id } = ctx.state.input.params as { id: string };
    const model = await catalog.get(id);
    if (!model) throw notFound(`No model with id ${id}`);
    return model;
  };

  router.get('/models', ...can('read_models'), async (ctx) => {
    ctx.body = { object: 'list', data: await catalog.list() };
  });

  router.get('/models/:id', ...can('read_models'), validate({ params: zGetModelPath }), async (ctx) => {
    ctx.body = await findModel(ctx);
  });

  router.post('/models', ...can('write_models'), validate({ query: zUploadModelQuery }), async (ctx) => {
    if (!ctx.is('application/octet-stream')) {
      throw new ApiError('UNSUPPORTED_MEDIA_TYPE', 'Upload the GGUF file as the raw body with Content-Type: application/octet-stream');
    }
    const { id, overwrite = false } = ctx.state.input.query as UploadModelData['query'];
    const limit = config.models.max_upload_bytes;
    const declared = Number(ctx.get('Content-Length') || 0);
    if (declared > limit) {
      // A body known to be too large is never stored: a moderate one is dropped as it arrives,
      // so the client sees the answer; a huge one closes the connection after the answer.
      if (declared > DISCARD_LIMIT_BYTES) ctx.set('Connection', 'close');
      else discardRest(ctx.req);
      throw new ApiError('PAYLOAD_TOO_LARGE', `The upload is larger than the limit of ${limit} bytes`, { limit_bytes: limit });
    }
    const target = catalog.pathOf(id);
    if (!overwrite && existsSync(target)) throw conflict('A model with this id already exists (use overwrite=true to replace it)');
    let bytes: number;
    try {
      bytes = await receiveModelUpload(chunksOf(ctx.req), target, { maxBytes: limit, overwrite });
    } catch (error) {
      if (error instanceof UploadTooLargeError || error instanceof InvalidModelFileError) discardRest(ctx.req);
      if (error instanceof UploadTooLargeError) {
        throw new ApiError('PAYLOAD_TOO_LARGE', error.message, { limit_bytes: limit });
      }
      if (error instanceof InvalidModelFileError) {
        throw validationError([{ path: 'body', message: error.message }], 'The upload is not a valid GGUF model');
      }
      if (error instanceof ModelExistsError) throw conflict(error.message);
      throw error;
    }
    catalog.invalidate();
    // Cache keys carry the file's size and time already; dropping the old answers frees their memory.
    cache.clearModel(id);
    // Unloaded only now that the new file is in place: a request meanwhile could otherwise
    // load the old weights again and keep them.
    if (overwrite) await engine.unload(id);
    await audit(store, ctx, { action: 'model.upload', outcome: 'success', target: id, details: { bytes, overwrite } });
    ctx.status = 201;
    ctx.body = await catalog.get(id);
  });

  router.delete('/models/:id', ...can('delete_models'), validate({ params: zDeleteModelPath }), async (ctx) => {
    const model = await findModel(ctx);
    await engine.unload(model.id);
    await rm(catalog.pathOf(model.id), { force: true });
    catalog.invalidate();
    cache.clearModel(model.id);
    await audit(store, ctx, { action: 'model.delete', outcome: 'success', target: model.id, details: { bytes: model.size_bytes } });
    ctx.status = 204;
  });

  router.post('/models/:id/load', ...can('write_models'), validate({ params: zLoadModelPath }), async (ctx) => {
    const model = await findModel(ctx);
    try {
      await engine.load(model.id);
    } catch (error) {
      throw engineError(error, config.engine.parallel);
    }
    ctx.body = await catalog.get(model.id);
  });

  router.post('/models/:id/unload', ...can('write_models'), validate({ params: zUnloadModelPath }), async (ctx) => {
    const model = await findModel(ctx);
    await engine.unload(model.id);
    ctx.body = await catalog.get(model.id);
  });

  return router;
}
