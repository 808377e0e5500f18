import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidModelFileError, receiveModelUpload } from '../src/engine/model-upload.js';

describe('model uploads', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-upload-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a body refused at its first chunk leaves no temp file behind, however soon it is refused', async () => {
    // Before the temp file was opened ahead of the body, its write stream could create it after
    // the refusal had already removed it (seen under load: a .part file left in the models dir).
    // So the temp file must exist before the first chunk is read.
    const seen: string[][] = [];
    for (let i = 0; i < 20; i++) {
      const body = (async function* () {
        seen.push(readdirSync(dir));
        yield Buffer.from('not a GGUF file');
      })();
      const refusal = await receiveModelUpload(body, path.join(dir, 'refused.gguf'), { maxBytes: 1024, overwrite: false }).catch((error: unknown) => error);
      expect(refusal).toBeInstanceOf(InvalidModelFileError);
      expect(readdirSync(dir)).toEqual([]);
    }
    expect(seen).toHaveLength(20);
    expect(seen.every((files) => files.length === 1 && /^\.upload-.*\.part$/.test(files[0]!))).toBe(true);
  });
});
