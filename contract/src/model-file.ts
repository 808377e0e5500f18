/** The model file the kit uploads: the project's generated tiny demo GGUF (about 1 MB), written once per process. */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeDemoModel } from '../../server/src/engine/demo-model.js';

let bytes: Promise<Uint8Array<ArrayBuffer>> | undefined;

export function tinyModelBytes(): Promise<Uint8Array<ArrayBuffer>> {
  bytes ??= (async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'contract-model-'));
    try {
      const file = path.join(dir, 'contract.gguf');
      await writeDemoModel(file, { preset: 'tiny', seed: 7 });
      return new Uint8Array(await readFile(file));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  })();
  return bytes;
}
