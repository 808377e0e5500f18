import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { readGgufInfo } from './gguf-reader.js';

export class UploadTooLargeError extends Error {
  override name = 'UploadTooLargeError';
}
export class InvalidModelFileError extends Error {
  override name = 'InvalidModelFileError';
}
export class ModelExistsError extends Error {
  override name = 'ModelExistsError';
}

/**
 * Streams an upload into a hidden temp file in the models dir (never read whole into memory),
 * checks the GGUF magic as soon as it arrives and the whole header at the end, then moves it to
 * `<id>.gguf` in one step. On any failure the temp file is removed: no partial model is left.
 */
export async function receiveModelUpload(body: AsyncIterable<Buffer>, target: string, options: { maxBytes: number; overwrite: boolean }): Promise<number> {
  const dir = path.dirname(target);
  await mkdir(dir, { recursive: true });
  const temp = path.join(dir, `.upload-${randomUUID()}.part`);
  let received = 0;
  let head = Buffer.alloc(0);
  try {
    await pipeline(
      body,
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          received += chunk.length;
          if (received > options.maxBytes) throw new UploadTooLargeError(`The upload is larger than the limit of ${options.maxBytes} bytes`);
          if (head.length < 8) {
            head = Buffer.concat([head, chunk]).subarray(0, 8);
            if (head.length >= 4 && head.subarray(0, 4).toString('latin1') !== 'GGUF') throw new InvalidModelFileError('Not a GGUF file (bad magic)');
          }
          yield chunk;
        }
      },
      createWriteStream(temp, { flags: 'wx', mode: 0o644 }),
    );
    if (received < 8) throw new InvalidModelFileError('Not a GGUF file (too short)');
    try {
      await readGgufInfo(temp);
    } catch (error) {
      throw new InvalidModelFileError(`Not a valid GGUF file: ${(error as Error).message}`);
    }
    if (options.overwrite) {
      await rename(temp, target);
    } else {
      // link() fails if the target exists: no window in which another upload could be replaced.
      try {
        await link(temp, target);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new ModelExistsError('A model with this id already exists (use overwrite=true to replace it)');
        throw error;
      }
      await rm(temp, { force: true });
    }
    return received;
  } finally {
    await rm(temp, { force: true });
  }
}
