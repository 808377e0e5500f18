import { ServiceUnavailableError } from '../core/errors.js';
import type { RequestOptions } from '../core/options.js';
import { APIPromise, type CallMode, type WithResponse } from '../core/response.js';
import { getHealth, getReadiness } from '../gen/sdk.gen.js';
import type { Health, Readiness } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** Liveness and readiness probes (`/health`, public). */
export class HealthResource extends Resource {
  /** `GET /health`: answers while the server process serves HTTP. */
  check(options?: RequestOptions): APIPromise<Health> {
    return this.transport.send('getHealth', (o) => getHealth(o), options);
  }

  /**
   * `GET /health/ready`: whether the server can serve requests. A 503 "not ready yet" is an
   * answer here, not an error: it resolves to `{ ready: false, checks }`. Not retried unless
   * `maxRetries` is given.
   */
  ready(options?: RequestOptions): APIPromise<Readiness> {
    const mode: CallMode = { raw: false };
    const result = this.transport.request('getReadiness', (o) => getReadiness(o), { maxRetries: 0, ...options }, mode).catch((error: unknown) => {
      if (error instanceof ServiceUnavailableError && isReadiness(error.body)) {
        return { response: new Response(null, { status: error.status, headers: error.headers }), status: error.status, headers: error.headers, requestId: error.requestId, rateLimit: undefined, data: error.body };
      }
      throw error;
    });
    return new APIPromise(result as Promise<WithResponse<Readiness>>, mode);
  }
}

function isReadiness(body: unknown): body is Readiness {
  return typeof body === 'object' && body !== null && typeof (body as Readiness).ready === 'boolean';
}
