import type { RequestOptions } from '../core/options.js';
import type { APIPromise } from '../core/response.js';
import { clearCache, getCacheStats } from '../gen/sdk.gen.js';
import type { CacheStats } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** The server's response cache and loaded models (`/api/v1/cache`, needs `manage_cache`). */
export class CacheResource extends Resource {
  /** Entries, hits and misses, and each loaded model's busy and waiting sequences. */
  stats(options?: RequestOptions): APIPromise<CacheStats> {
    return this.transport.send('getCacheStats', (o) => getCacheStats(o), options);
  }

  /** Empties the response cache. */
  clear(options?: RequestOptions): APIPromise<void> {
    return this.transport.send('clearCache', (o) => clearCache(o), options) as APIPromise<unknown> as APIPromise<void>;
  }
}
