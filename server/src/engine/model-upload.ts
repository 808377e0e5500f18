import { randomUUID } from 'node:crypto';
import { link, mkdir, open, rename, rm } from 'node:fs/promises';
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
  // Opened before the body is read: a write stream opens its file asynchronously, and a body refused
  // at its first chunk could have removed the temp file before the stream created it (left behind).
  const file = await open(temp, 'wx', 0o644);
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
      file.createWriteStream(),
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
    await file.close().catch(() => {}); // (the stream closes it when it finishes: closing again is refused)
    await rm(temp, { force: true });
  }
}
