import type { MetricsSummary } from './gen/types.gen.js';

const DURATION_SAMPLES = 2048;

/**
 * Counters since start, kept in memory. Durations keep a ring of the latest samples for
 * percentiles: bounded memory, recent behaviour.
 */
export class ServerMetrics {
  readonly startedAt = Date.now();
  requestsTotal = 0;
  inFlight = 0;
  rateLimitedTotal = 0;
  authenticationFailuresTotal = 0;
  readonly byStatus = new Map<number, number>();
  readonly #durations = new Float64Array(DURATION_SAMPLES);
  #durationCount = 0;
  #durationSum = 0;

  recordResponse(status: number, durationMs: number): void {
    this.byStatus.set(status, (this.byStatus.get(status) ?? 0) + 1);
    if (status === 429) this.rateLimitedTotal++;
    if (status === 401) this.authenticationFailuresTotal++;
    this.#durations[this.#durationCount % DURATION_SAMPLES] = durationMs;
    this.#durationCount++;
    this.#durationSum += durationMs;
  }

  summary(): MetricsSummary {
    const samples = Array.from(this.#durations.subarray(0, Math.min(this.#durationCount, DURATION_SAMPLES))).sort((a, b) => a - b);
    const quantile = (q: number) => (samples.length === 0 ? 0 : samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!);
    return {
      uptime_seconds: (Date.now() - this.startedAt) / 1000,
      requests_total: this.requestsTotal,
      requests_in_flight: this.inFlight,
      responses_by_status: Object.fromEntries([...this.byStatus].map(([status, n]) => [String(status), n])),
      rate_limited_total: this.rateLimitedTotal,
      authentication_failures_total: this.authenticationFailuresTotal,
      request_duration_ms: {
        count: this.#durationCount,
        sum: Number(this.#durationSum.toFixed(3)),
        p50: quantile(0.5),
        p95: quantile(0.95),
        p99: quantile(0.99),
      },
    };
  }

  /** The Prometheus text exposition format, version 0.0.4. */
  prometheus(): string {
    const s = this.summary();
    const lines = [
      '# HELP inferno_uptime_seconds Seconds since the server started.',
      '# TYPE inferno_uptime_seconds gauge',
      `inferno_uptime_seconds ${s.uptime_seconds}`,
      '# HELP inferno_requests_total Requests received.',
      '# TYPE inferno_requests_total counter',
      `inferno_requests_total ${s.requests_total}`,
      '# HELP inferno_requests_in_flight Requests being served now.',
      '# TYPE inferno_requests_in_flight gauge',
      `inferno_requests_in_flight ${s.requests_in_flight}`,
      '# HELP inferno_responses_total Responses by HTTP status.',
      '# TYPE inferno_responses_total counter',
      ...Object.entries(s.responses_by_status).map(([status, n]) => `inferno_responses_total{status="${status}"} ${n}`),
      '# HELP inferno_rate_limited_total Requests refused by the rate limiter.',
      '# TYPE inferno_rate_limited_total counter',
      `inferno_rate_limited_total ${s.rate_limited_total}`,
      '# HELP inferno_authentication_failures_total Requests refused for bad credentials.',
      '# TYPE inferno_authentication_failures_total counter',
      `inferno_authentication_failures_total ${s.authentication_failures_total}`,
      '# HELP inferno_request_duration_ms Request durations (recent samples).',
      '# TYPE inferno_request_duration_ms summary',
      `inferno_request_duration_ms{quantile="0.5"} ${s.request_duration_ms.p50}`,
      `inferno_request_duration_ms{quantile="0.95"} ${s.request_duration_ms.p95}`,
      `inferno_request_duration_ms{quantile="0.99"} ${s.request_duration_ms.p99}`,
      `inferno_request_duration_ms_sum ${s.request_duration_ms.sum}`,
      `inferno_request_duration_ms_count ${s.request_duration_ms.count}`,
    ];
    return lines.join('\n') + '\n';
  }
}
