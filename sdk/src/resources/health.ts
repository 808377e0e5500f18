import { ServiceUnavailableError } from '../core/errors.js';
import type { RequestOptions } from '../core/options.js';
import { getHealth, getReadiness } from '../gen/sdk.gen.js';
import type { Health, Readiness } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** Liveness and readiness probes (`/health`, public). */
export class HealthResource extends Resource {
  /** `GET /health`: answers while the server process serves HTTP. */
  check(options?: RequestOptions): Promise<Health> {
    return this.transport.send('getHealth', (o) => getHealth(o), options);
  }

  /**
   * `GET /health/ready`: whether the server can serve requests. A 503 "not ready yet" is an
   * answer here, not an error: it resolves to `{ ready: false, checks }`. Not retried unless
   * `maxRetries` is given.
   */
  async ready(options?: RequestOptions): Promise<Readiness> {
    try {
      return await this.transport.send('getReadiness', (o) => getReadiness(o), { maxRetries: 0, ...options });
    } catch (error) {
      if (error instanceof ServiceUnavailableError && isReadiness(error.body)) return error.body;
      throw error;
    }
  }
}

function isReadiness(body: unknown): body is Readiness {
  return typeof body === 'object' && body !== null && typeof (body as Readiness).ready === 'boolean';
}
