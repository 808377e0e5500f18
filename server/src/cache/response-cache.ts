import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { Config } from '../config.js';
// Only a request whose answer is fixed by its input (a seed, or greedy decoding) may be answered
// from the cache: any other would lose its randomness.
import { isDeterministic, type GenerationRequest } from '../engine/engine.js';
import type { CacheStats, InferenceResponse } from '../gen/types.gen.js';

/** What a hit gives back; `id`, `created` and `timings` belong to each answer and are made fresh. */
export type CachedInference = Pick<InferenceResponse, 'model' | 'text' | 'tool_calls' | 'finish_reason' | 'usage'>;

/** The cache's part of the spec's `CacheStats` (the route adds the loaded models). */
export type ResponseCacheStats = Omit<CacheStats, 'loaded_models'>;

/**
 * An in-memory LRU cache of native inference answers. The key hashes the model id, the model
 * file's size, modification time and inode (so a replaced file never serves its predecessor's
 * answers), and every generation parameter. Settings are read per call (`[cache]`, runtime-tunable).
 */
export class ResponseCache {
  // A Map keeps insertion order: the first entry is the least recently used.
  readonly #entries = new Map<string, { model: string; value: CachedInference; bytes: number }>();
  #bytes = 0;
  #hits = 0;
  #misses = 0;

  constructor(
    private readonly settings: () => Config['cache'],
    private readonly modelFile: (id: string) => string,
  ) {}

  /**
   * The key of a request, or undefined when it is not to be cached: the cache is off, sampling is
   * random, or the model file does not exist (the request then fails on its own).
   */
  async keyOf(request: GenerationRequest): Promise<string | undefined> {
    if (!this.settings().enabled) {
      this.clear(); // turned off at run time: free the memory
      return undefined;
    }
    if (!isDeterministic(request)) return undefined;
    let file;
    try {
      file = await stat(this.modelFile(request.model));
    } catch {
      return undefined;
    }
    const { model, prompt, messages, maxTokens, temperature, topP, topK, stop, seed, jsonSchema, functions } = request;
    const identity = [model, file.size, file.mtimeMs, file.ino, prompt ?? null, messages ?? null, maxTokens, temperature ?? null, topP ?? null, topK ?? null, stop ?? null, seed ?? null, jsonSchema ?? null, functions ?? null];
    return createHash('sha256').update(JSON.stringify(identity)).digest('hex');
  }

  /** Looks a key up, counting the hit or miss. */
  get(key: string): CachedInference | undefined {
    const entry = this.#entries.get(key);
    if (!entry) {
      this.#misses++;
      return undefined;
    }
    this.#hits++;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry.value;
  }

  set(key: string, value: CachedInference): void {
    if (!this.settings().enabled) return;
    this.#delete(key);
    const bytes = key.length + Buffer.byteLength(JSON.stringify(value));
    this.#entries.set(key, { model: value.model, value, bytes });
    this.#bytes += bytes;
    this.#evict();
  }

  /** Empties the cache; answers how many entries were dropped. The counters are kept. */
  clear(): number {
    const size = this.#entries.size;
    this.#entries.clear();
    this.#bytes = 0;
    return size;
  }

  /** Drops a model's entries (its file was deleted or replaced). */
  clearModel(model: string): void {
    for (const [key, entry] of this.#entries) if (entry.model === model) this.#delete(key);
  }

  /** Roughly the memory the entries hold: keys and answers as JSON. */
  get bytes(): number {
    return this.#bytes;
  }

  #delete(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    this.#bytes -= entry.bytes;
  }

  stats(): ResponseCacheStats {
    this.#evict();
    const { enabled, max_entries } = this.settings();
    const lookups = this.#hits + this.#misses;
    return { enabled, entries: this.#entries.size, max_entries, hits: this.#hits, misses: this.#misses, hit_rate: lookups === 0 ? 0 : this.#hits / lookups };
  }

  // `max_entries` may have been lowered at run time: trim down to it.
  #evict(): void {
    const max = this.settings().max_entries;
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= max) break;
      this.#delete(key);
    }
  }
}
