import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Model } from '../gen/types.gen.js';
import { readGgufInfo, type GgufInfo } from './gguf-reader.js';

/**
 * A model id is a file name without `.gguf` (the spec's `ModelId`): no separator, and a first
 * character that is neither a dot nor a dash, so it can never walk a path or be a hidden file.
 */
export const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isModelId(id: string): boolean {
  return MODEL_ID.test(id);
}

/**
 * The `*.gguf` files of the models directory. Header facts (architecture, context length...) are
 * read once per file version and cached by size and modification time.
 */
export class ModelCatalog {
  readonly #headers = new Map<string, { version: string; info: GgufInfo | null }>();

  constructor(
    readonly dir: string,
    private readonly isLoaded: (id: string) => boolean = () => false,
  ) {}

  /** The file of a model id; the id is checked first, so a request can never name another path. */
  pathOf(id: string): string {
    if (!isModelId(id)) throw new Error(`Invalid model id: ${JSON.stringify(id)}`);
    return path.join(this.dir, `${id}.gguf`);
  }

  async list(): Promise<Model[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const ids = names.filter((n) => n.endsWith('.gguf')).map((n) => n.slice(0, -'.gguf'.length)).filter(isModelId).sort();
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
    const info = await this.#header(file, `${stats.size}:${stats.mtimeMs}`);
    return {
      id,
      object: 'model',
      size_bytes: stats.size,
      modified_at: stats.mtime.toISOString(),
      loaded: this.isLoaded(id),
      architecture: info?.architecture ?? null,
      context_length: info?.contextLength ?? null,
      parameter_count: info?.parameterCount ?? null,
      file_type: info?.fileType ?? null,
    };
  }

  async #header(file: string, version: string): Promise<GgufInfo | null> {
    const cached = this.#headers.get(file);
    if (cached?.version === version) return cached.info;
    // A file that is not valid GGUF is still listed (its size and date are facts), without header facts.
    const info = await readGgufInfo(file).catch(() => null);
    this.#headers.set(file, { version, info });
    return info;
  }
}
