import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from 'node-llama-cpp';
import { afterAll, beforeAll } from 'vitest';
import { DEFAULT_CONFIG, type Config } from '../../server/src/config.js';
import { writeDemoModel } from '../../server/src/engine/demo-model.js';
import { InferenceEngine } from '../../server/src/engine/engine.js';
import { ModelCatalog } from '../../server/src/engine/model-catalog.js';
import { createLogger } from '../../server/src/logging/logger.js';

/** An engine (not started) on the models in `dir`, its `[engine]` the defaults with `engine` over them. */
export function engineOn(dir: string, engine: Partial<Config['engine']> = {}): InferenceEngine {
  const config = structuredClone(DEFAULT_CONFIG) as Config;
  Object.assign(config.engine, engine);
  return new InferenceEngine(config, new ModelCatalog(dir), createLogger('silent'));
}

/**
 * llama.cpp with the tiny demo model loaded, for the tests of one file: written into a temporary
 * folder (`dir`, as `tiny.gguf`) and loaded before them, freed after them.
 */
export function useTinyModel(): { readonly llama: Llama; readonly model: LlamaModel; readonly dir: string } {
  let llama: Llama | undefined;
  let model: LlamaModel | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-tiny-'));
    await writeDemoModel(path.join(dir, 'tiny.gguf'), { preset: 'tiny' });
    llama = await getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: LlamaLogLevel.error });
    model = await llama.loadModel({ modelPath: path.join(dir, 'tiny.gguf') });
  });
  afterAll(async () => {
    await model?.dispose();
    await llama?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const loaded = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the tiny model is loaded in beforeAll');
    return value;
  };
  return {
    get llama() {
      return loaded(llama);
    },
    get model() {
      return loaded(model);
    },
    get dir() {
      return loaded(dir);
    },
  };
}
