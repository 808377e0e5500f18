import type { RequestOptions } from '../core/options.js';
import type { APIPromise } from '../core/response.js';
import { getMetrics, getPrometheusMetrics } from '../gen/sdk.gen.js';
import type { MetricsSummary } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** The server's counters (needs `read_metrics`). */
export class MetricsResource extends Resource {
  /** `GET /api/v1/metrics`: a JSON summary since the server started. */
  get(options?: RequestOptions): APIPromise<MetricsSummary> {
    return this.transport.send('getMetrics', (o) => getMetrics(o), options);
  }

  /** `GET /metrics`: the same counters in the Prometheus text format. */
  prometheus(options?: RequestOptions): APIPromise<string> {
    return this.transport.send('getPrometheusMetrics', (o) => getPrometheusMetrics(o), options);
  }
}
