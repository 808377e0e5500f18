import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../logging/logger.js';
import { writeDemoModel } from './demo-model.js';

export const DEMO_MODEL_ID = 'demo-tiny';

/**
 * A fresh install has no model and none can be downloaded here: when the models dir holds no
 * GGUF file, write the generated demo model so that the server works out of the box.
 */
export async function ensureDemoModel(modelsDir: string, logger: Logger): Promise<string | undefined> {
  await mkdir(modelsDir, { recursive: true });
  const names = await readdir(modelsDir);
  if (names.some((name) => name.endsWith('.gguf'))) return undefined;
  const file = path.join(modelsDir, `${DEMO_MODEL_ID}.gguf`);
  // Written aside and renamed into place: replicas sharing the models dir and starting together
  // each write the same bytes, and none ever lists (or loads) a half-written file.
  const temp = path.join(modelsDir, `.${DEMO_MODEL_ID}.${process.pid}.partial`);
  let result;
  try {
    result = await writeDemoModel(temp, { preset: 'tiny' });
    await rename(temp, file);
  } finally {
    await rm(temp, { force: true });
  }
  logger.info(
    { model: DEMO_MODEL_ID, path: file, bytes: result.bytes, parameters: result.parameters },
    'The models dir was empty: wrote the generated demo model "demo-tiny" (random weights, gibberish output by design; for tests and demos). Put real GGUF files in the models dir to use them.',
  );
  return file;
}
