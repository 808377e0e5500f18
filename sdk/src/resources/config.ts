import type { RequestOptions } from '../core/options.js';
import type { APIPromise } from '../core/response.js';
import { getConfig, updateConfig } from '../gen/sdk.gen.js';
import type { ConfigPatch, ConfigView } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** The server's runtime configuration (`/api/v1/config`, needs `write_config`). */
export class ConfigResource extends Resource {
  /** The running configuration; secrets read `(set)` or null. */
  get(options?: RequestOptions): APIPromise<ConfigView> {
    return this.transport.send('getConfig', (o) => getConfig(o), options);
  }

  /** Changes runtime-tunable settings; they take effect at once and persist across restarts. */
  update(patch: ConfigPatch, options?: RequestOptions): APIPromise<ConfigView> {
    return this.transport.send('updateConfig', (o) => updateConfig({ ...o, body: patch }), options);
  }
}
