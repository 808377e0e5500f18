import type { ClientOptions } from './core/options.js';
import type { RateLimitInfo } from './core/rate-limit.js';
import { Transport } from './core/transport.js';
import { ApiKeysResource } from './resources/api-keys.js';
import { AuditLogsResource } from './resources/audit-logs.js';
import { AuthResource } from './resources/auth.js';
import { CacheResource } from './resources/cache.js';
import { ConfigResource } from './resources/config.js';
import { EmbeddingsResource } from './resources/embeddings.js';
import { HealthResource } from './resources/health.js';
import { InferenceResource } from './resources/inference.js';
import { JobsResource } from './resources/jobs.js';
import { MetricsResource } from './resources/metrics.js';
import { UsageResource } from './resources/usage.js';
import { ModelsResource } from './resources/models.js';
import { UsersResource } from './resources/users.js';

/**
 * A client of one Inferno server. Each API area is a property (`client.models.list()`,
 * `client.users.create(...)`); every method takes the request options last, which win over the
 * client's.
 *
 * @example
 * ```ts
 * const client = new InfernoClient({ baseUrl: 'http://127.0.0.1:8080', apiKey: process.env.INFERNO_API_KEY });
 * const { data: models } = await client.models.list();
 * console.log(models.map((m) => m.id), client.rateLimit?.remaining);
 * ```
 */
export class InfernoClient {
  /** Login, logout and the current principal. */
  readonly auth: AuthResource;
  /** API keys: create, list, revoke. */
  readonly apiKeys: ApiKeysResource;
  /** User management (`manage_users`). */
  readonly users: UsersResource;
  /** The models the server can run: list, upload, load, delete. */
  readonly models: ModelsResource;
  /** Text generation, whole or streamed. */
  readonly inference: InferenceResource;
  /** Embeddings. */
  readonly embeddings: EmbeddingsResource;
  /** Batches of inference requests run in the background. */
  readonly jobs: JobsResource;
  /** The response cache (`manage_cache`). */
  readonly cache: CacheResource;
  /** The audit log (`view_audit_logs`). */
  readonly auditLogs: AuditLogsResource;
  /** The server's counters (`read_metrics`). */
  readonly metrics: MetricsResource;
  /** Requests and tokens used per user, key, model and day. */
  readonly usage: UsageResource;
  /** The server's runtime configuration (`write_config`). */
  readonly config: ConfigResource;
  /** Liveness and readiness probes. */
  readonly health: HealthResource;
  readonly #transport: Transport;

  /**
   * @param options - Where the server is and how to authenticate (`apiKey`, `token`, or
   *   `credentials`), plus defaults for every request: timeout 60 s, 2 retries, no throttling.
   */
  constructor(options: ClientOptions) {
    const transport = new Transport(options);
    this.#transport = transport;
    this.auth = new AuthResource(transport);
    this.apiKeys = new ApiKeysResource(transport);
    this.users = new UsersResource(transport);
    this.models = new ModelsResource(transport);
    this.inference = new InferenceResource(transport);
    this.embeddings = new EmbeddingsResource(transport);
    this.jobs = new JobsResource(transport);
    this.cache = new CacheResource(transport);
    this.auditLogs = new AuditLogsResource(transport);
    this.metrics = new MetricsResource(transport);
    this.usage = new UsageResource(transport);
    this.config = new ConfigResource(transport);
    this.health = new HealthResource(transport);
  }

  /**
   * The rate-limit state from the latest response that had the headers (success or error) and
   * counts against the client's credential (not logins, nor 401s: the server counts those
   * against the client's IP address); `undefined` before the first one.
   */
  get rateLimit(): RateLimitInfo | undefined {
    return this.#transport.rateLimit.latest;
  }
}
