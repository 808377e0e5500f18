import { watch, type FSWatcher } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Model } from '../gen/types.gen.js';
import { GgufFormatError, readGgufInfo } from './gguf-reader.js';

// A header's metadata may hold any number: only a count is reported as one.
const isCount = (value: number | undefined): value is number => value !== undefined && Number.isSafeInteger(value) && value >= 0;
const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/**
 * A model id is a file name without `.gguf` (the spec's `ModelId`): no separator, and a first
 * character that is neither a dot nor a dash, so it can never walk a path or be a hidden file.
 */
export const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isModelId(id: string): boolean {
  return MODEL_ID.test(id);
}

/** What validating a model file found: the facts a listing shows, or why llama.cpp must not load it. */
export type ModelFileCheck =
  | { valid: true; architecture: string | null; contextLength: number | null; parameterCount: number; fileType: string | null }
  | { valid: false; reason: string };

/** Validates one GGUF file; the reason never names a path (it is shown to API clients). */
export async function checkModelFile(file: string): Promise<ModelFileCheck> {
  try {
    const info = await readGgufInfo(file);
    return { valid: true, architecture: info.architecture ?? null, contextLength: isCount(info.contextLength) ? info.contextLength : null, parameterCount: info.parameterCount, fileType: info.fileType ?? null };
  } catch (error) {
    if (error instanceof GgufFormatError) return { valid: false, reason: error.message };
    return { valid: false, reason: `The file could not be read (${(error as NodeJS.ErrnoException).code ?? 'I/O error'})` };
  }
}

/**
 * The `*.gguf` files of the models directory. Each file is fully validated (`readGgufInfo`) once per
 * version, cached by size and modification time (only the few facts a listing shows are kept, not
 * the metadata), and concurrent listings share one validation. Invalid files are listed with
 * `state: invalid` and the reason, and `onInvalid` hears of each new invalid version once.
 *
 * The listing itself is cached too: reading the directory and stating every file on each
 * `GET /models` was a fifth of that request's CPU. A watcher on the directory drops the cached
 * listing on any change there, `invalidate()` drops it at once (uploads, deletions), and it is never
 * older than `listTtlMs` either, for file systems whose changes no watcher hears (network mounts).
 * `loaded` is read live on every listing. `get()` always looks at the file itself.
 */
export class ModelCatalog {
  readonly #checks = new Map<string, { version: string; check: Promise<ModelFileCheck> }>();
  #listing?: { at: number; models: Promise<Omit<Model, 'loaded'>[]> };
  #watcher?: FSWatcher;
  #closed = false;
  readonly #listTtlMs: number;

  constructor(
    readonly dir: string,
    private readonly isLoaded: (id: string) => boolean = () => false,
    private readonly onInvalid: (id: string, file: string, reason: string) => void = () => undefined,
    options: { listTtlMs?: number } = {},
  ) {
    this.#listTtlMs = options.listTtlMs ?? 2_000;
  }

  /** The file of a model id; the id is checked first, so a request can never name another path. */
  pathOf(id: string): string {
    if (!isModelId(id)) throw new Error(`Invalid model id: ${JSON.stringify(id)}`);
    return path.join(this.dir, `${id}.gguf`);
  }

  /** Forgets the cached listing: the next `list()` reads the directory again. */
  invalidate(): void {
    this.#listing = undefined;
  }

  /** Stops watching the directory. */
  close(): void {
    this.#closed = true;
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#listing = undefined;
  }

  async list(): Promise<Model[]> {
    const now = performance.now();
    if (!this.#listing || now - this.#listing.at > this.#listTtlMs) {
      this.#watch();
      const listing = { at: now, models: this.#read() };
      this.#listing = listing;
      // A failed read is not cached.
      listing.models.catch(() => {
        if (this.#listing === listing) this.#listing = undefined;
      });
    }
    return (await this.#listing.models).map((model) => ({ ...model, loaded: this.isLoaded(model.id) }));
  }

  /** Watches the directory (once it exists) so that a change there drops the cached listing. */
  #watch(): void {
    if (this.#watcher || this.#closed) return;
    try {
      const watcher = watch(this.dir, { persistent: false }, () => this.invalidate());
      watcher.on('error', () => {
        // The directory went away (or the watch broke): fall back to reading it every time until it is back.
        watcher.close();
        if (this.#watcher === watcher) this.#watcher = undefined;
        this.invalidate();
      });
      this.#watcher = watcher;
    } catch {
      // No directory yet, or no watcher on this file system: the TTL alone bounds the listing's age.
    }
  }

  async #read(): Promise<Omit<Model, 'loaded'>[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const ids = names.filter((n) => n.endsWith('.gguf')).map((n) => n.slice(0, -'.gguf'.length)).filter(isModelId).sort();
    // Files gone from the dir take their cached checks with them.
    const files = new Set(ids.map((id) => this.pathOf(id)));
    for (const file of this.#checks.keys()) if (!files.has(file)) this.#checks.delete(file);
    const models = await Promise.all(ids.map((id) => this.get(id)));
    return models.filter((m): m is Model => m !== undefined);
  }

  async get(id: string): Promise<Model | undefined> {
    if (!isModelId(id)) return undefined;
    const file = this.pathOf(id);
    let stats;
    try {
      stats = await stat(file);
    } catch {
      return undefined;
    }
    if (!stats.isFile()) return undefined;
    const check = await this.#check(id, file, `${stats.size}:${stats.mtimeMs}`);
    return {
      id,
      object: 'model',
      size_bytes: stats.size,
      modified_at: stats.mtime.toISOString(),
      loaded: this.isLoaded(id),
      state: check.valid ? 'available' : 'invalid',
      // Both may come from the file's own bytes: cut to the spec's bounds.
      invalid_reason: check.valid ? null : clip(check.reason, 1024),
      architecture: check.valid && check.architecture !== null ? clip(check.architecture, 128) : null,
      context_length: check.valid ? check.contextLength : null,
      parameter_count: check.valid ? check.parameterCount : null,
      file_type: check.valid ? check.fileType : null,
    };
  }

  /**
   * Marks the model's current file invalid, e.g. when llama.cpp failed to load it although it
   * passed validation: later requests are refused at once instead of loading it again.
   */
  markInvalid(id: string, reason: string): void {
    const cached = this.#checks.get(this.pathOf(id));
    if (cached) cached.check = Promise.resolve({ valid: false, reason });
    this.invalidate();
  }

  #check(id: string, file: string, version: string): Promise<ModelFileCheck> {
    const cached = this.#checks.get(file);
    if (cached?.version === version) return cached.check;
    const check = checkModelFile(file).then((result) => {
      if (!result.valid) this.onInvalid(id, file, result.reason);
      return result;
    });
    this.#checks.set(file, { version, check });
    return check;
  }
}
