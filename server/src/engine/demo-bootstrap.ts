import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../logging/logger.js';
import { writeDemoModel } from './demo-model.js';
import type { ModelCatalog } from './model-catalog.js';

export const DEMO_MODEL_ID = 'demo-tiny';

/**
 * A fresh install has no model and none can be downloaded here: when the models dir holds no usable
 * GGUF file (none, or only invalid ones), write the generated demo model so that the server works
 * out of the box. Listing the catalog validates every file, which reports the invalid ones. A file
 * already named like the demo model is never replaced.
 */
export async function ensureDemoModel(catalog: ModelCatalog, logger: Logger): Promise<string | undefined> {
  await mkdir(catalog.dir, { recursive: true });
  const models = await catalog.list();
  if (models.some((model) => model.state === 'available')) return undefined;
  const file = catalog.pathOf(DEMO_MODEL_ID);
  if (existsSync(file)) return undefined;
  // Written aside and renamed into place: replicas sharing the models dir and starting together
  // each write the same bytes, and none ever lists (or loads) a half-written file.
  const temp = path.join(catalog.dir, `.${DEMO_MODEL_ID}.${process.pid}.partial`);
  let result;
  try {
    result = await writeDemoModel(temp, { preset: 'tiny' });
    await rename(temp, file);
    catalog.invalidate();
  } finally {
    await rm(temp, { force: true });
  }
  logger.info(
    { model: DEMO_MODEL_ID, path: file, bytes: result.bytes, parameters: result.parameters, invalid_files: models.length },
    'The models dir had no usable model: wrote the generated demo model "demo-tiny" (random weights, gibberish output by design; for tests and demos). Put real GGUF files in the models dir to use them.',
  );
  return file;
}
