import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { JobStatus, MetricsDistribution, MetricsSummary } from '../gen/types.gen.js';
import { LabelBudget, methodLabel, statusLabel, UNMATCHED_ROUTE } from './labels.js';

/** Which API a generation was asked through; batch jobs are their own family. */
export type ApiFamily = 'native' | 'openai' | 'job';
/** How a 401 came about: no credential, a malformed header, a bad API key or JWT, or a failed login. */
export type AuthFailureKind = 'missing' | 'malformed' | 'api_key' | 'jwt' | 'password';
/** Whose budget a rate-limit refusal was charged to (never the key or user itself). */
export type PrincipalType = 'api_key' | 'user' | 'ip';

/** What one finished generation reports (the engine's `GenerationResult`, in its own terms). */
export interface GenerationObservation {
  finishReason: string;
  promptTokens: number;
  completionTokens: number;
  queuedMs: number;
  promptMs: number;
  generationMs: number;
  totalMs: number;
}

/** Where the gauges read the state at scrape time: nothing is counted per request for them. */
export interface MetricSources {
  engine?: { stats(): { model: string; busy: number; waiting: number; sequences: number }[] };
  cache?: { stats(): { entries: number; hits: number; misses: number }; readonly bytes: number };
  jobs?: { countJobsByStatus(): Promise<Partial<Record<JobStatus, number>>> };
}

/** How many distinct models get their own label before the rest fold into `other`. */
const MAX_MODEL_LABELS = 64;
const JOB_STATES: readonly JobStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

// Buckets in seconds that span the demo model (a token in a third of a millisecond) and real
// models on CPUs or GPUs (tens of milliseconds a token, seconds to the first one).
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const PER_TOKEN_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const GENERATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const LOAD_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/**
 * Every metric of the server, in one prom-client registry per server: `GET /metrics` exposes it
 * and `GET /api/v1/metrics` summarises it, so the two cannot disagree. Each event of the server
 * is one method call here; gauges of state (queues, sequences, models, cache, jobs) are read from
 * their owners at scrape time.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly startedAt = Date.now();
  readonly #models = new LabelBudget(MAX_MODEL_LABELS);
  #sources: MetricSources = {};

  readonly #httpRequests: Counter<'route' | 'method' | 'status'>;
  readonly #httpDuration: Histogram<'route' | 'method'>;
  #inFlight = 0;
  readonly #promptTokens: Counter<'model' | 'api'>;
  readonly #generatedTokens: Counter<'model' | 'api'>;
  readonly #inferenceRequests: Counter<'model' | 'api' | 'finish_reason'>;
  readonly #cancelled: Counter<'model' | 'api'>;
  readonly #streamFailures: Counter<'model' | 'api'>;
  readonly #timeToFirstToken: Histogram<'model' | 'api'>;
  readonly #timePerOutputToken: Histogram<'model' | 'api'>;
  readonly #generationDuration: Histogram<'model' | 'api'>;
  readonly #queueWait: Histogram<'model'>;
  readonly #modelLoad: Histogram<'model'>;
  readonly #modelLoadFailures: Counter<'model'>;
  readonly #embeddingRequests: Counter<'model' | 'api'>;
  readonly #embeddingInputs: Counter<'model' | 'api'>;
  readonly #embeddingTokens: Counter<'model' | 'api'>;
  readonly #authFailures: Counter<'kind'>;
  readonly #rateLimited: Counter<'principal'>;
  readonly #loginLockouts: Counter;
  readonly #jobItems: Counter<'outcome'>;

  constructor(options: { version?: string; defaultMetrics?: boolean; replica?: string } = {}) {
    const registers = [this.registry];
    const sources = () => this.#sources;
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    new Gauge({ name: 'inferno_build_info', help: 'Always 1; the server version as a label.', labelNames: ['version'], registers }).set({ version: options.version ?? 'unknown' }, 1);
    // Behind a load balancer each replica is scraped apart: this names it (join on it in queries).
    new Gauge({ name: 'inferno_replica_info', help: 'Always 1; this replica\'s id ([server] replica_id) as a label.', labelNames: ['replica'], registers }).set({ replica: options.replica ?? 'local' }, 1);
    const startedAt = this.startedAt;
    new Gauge({
      name: 'inferno_uptime_seconds',
      help: 'Seconds since the server started.',
      registers,
      collect() {
        this.set((Date.now() - startedAt) / 1000);
      },
    });

    this.#httpRequests = new Counter({ name: 'inferno_http_requests_total', help: 'HTTP requests answered, by route template, method and status.', labelNames: ['route', 'method', 'status'], registers });
    this.#httpDuration = new Histogram({ name: 'inferno_http_request_duration_seconds', help: 'Time from a request\'s arrival to the end of its response (a stream: to its last event).', labelNames: ['route', 'method'], buckets: LATENCY_BUCKETS, registers });
    // A plain count, read at scrape time: the gauge's own inc/dec cost a label hash each per request.
    const inFlight = () => this.#inFlight;
    new Gauge({
      name: 'inferno_http_requests_in_flight',
      help: 'Requests being served now.',
      registers,
      collect() {
        this.set(inFlight());
      },
    });

    const byModel = ['model', 'api'] as const;
    this.#promptTokens = new Counter({ name: 'inferno_prompt_tokens_total', help: 'Prompt tokens evaluated by the engine (cache hits evaluate none).', labelNames: byModel, registers });
    this.#generatedTokens = new Counter({ name: 'inferno_generated_tokens_total', help: 'Tokens generated by the engine.', labelNames: byModel, registers });
    this.#inferenceRequests = new Counter({ name: 'inferno_inference_requests_total', help: 'Generations finished, by finish reason (stop, length, cancelled).', labelNames: ['model', 'api', 'finish_reason'], registers });
    this.#cancelled = new Counter({ name: 'inferno_generations_cancelled_total', help: 'Generations stopped because the client went away or cancelled.', labelNames: byModel, registers });
    this.#streamFailures = new Counter({ name: 'inferno_stream_failures_total', help: 'Streams that ended with an error event after they had opened (answered 200), e.g. the model was unloaded.', labelNames: byModel, registers });
    this.#timeToFirstToken = new Histogram({ name: 'inferno_time_to_first_token_seconds', help: 'From the request reaching the engine (queue and model load included) to its first generated token.', labelNames: byModel, buckets: LATENCY_BUCKETS, registers });
    this.#timePerOutputToken = new Histogram({ name: 'inferno_time_per_output_token_seconds', help: 'Mean time between generated tokens after the first, one sample per generation of two tokens or more.', labelNames: byModel, buckets: PER_TOKEN_BUCKETS, registers });
    this.#generationDuration = new Histogram({ name: 'inferno_generation_duration_seconds', help: 'End to end: from the request reaching the engine to its last token.', labelNames: byModel, buckets: GENERATION_BUCKETS, registers });

    this.#queueWait = new Histogram({ name: 'inferno_queue_wait_seconds', help: 'Time a generation waited for a free sequence of its model.', labelNames: ['model'], buckets: LATENCY_BUCKETS, registers });
    const models = this.#models;
    const engineGauge = (name: string, help: string, pick: (s: { busy: number; waiting: number; sequences: number }) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['model'],
        registers,
        collect() {
          this.reset();
          for (const s of sources().engine?.stats() ?? []) this.inc({ model: models.label(s.model) }, pick(s));
        },
      });
    engineGauge('inferno_queue_depth', 'Generations waiting for a free sequence, per loaded model.', (s) => s.waiting);
    engineGauge('inferno_sequences_busy', 'Sequences generating now, per loaded model.', (s) => s.busy);
    engineGauge('inferno_sequences_total', 'Sequences (parallel generations) of each loaded model.', (s) => s.sequences);
    new Gauge({
      name: 'inferno_models_loaded',
      help: 'Models loaded in memory.',
      registers,
      collect() {
        this.set(sources().engine?.stats().length ?? 0);
      },
    });
    this.#modelLoad = new Histogram({ name: 'inferno_model_load_seconds', help: 'Time to load a model and create its contexts.', labelNames: ['model'], buckets: LOAD_BUCKETS, registers });
    this.#modelLoadFailures = new Counter({ name: 'inferno_model_load_failures_total', help: 'Model loads that failed.', labelNames: ['model'], registers });
    this.#embeddingRequests = new Counter({ name: 'inferno_embedding_requests_total', help: 'Embedding requests answered.', labelNames: byModel, registers });
    this.#embeddingInputs = new Counter({ name: 'inferno_embedding_inputs_total', help: 'Texts embedded.', labelNames: byModel, registers });
    this.#embeddingTokens = new Counter({ name: 'inferno_embedding_tokens_total', help: 'Tokens of the texts embedded.', labelNames: byModel, registers });

    this.#authFailures = new Counter({ name: 'inferno_authentication_failures_total', help: 'Requests answered 401, by the credential presented (missing, malformed, api_key, jwt) or a failed login (password).', labelNames: ['kind'], registers });
    this.#rateLimited = new Counter({ name: 'inferno_rate_limited_total', help: 'Requests refused by the rate limiter, by whose budget they spent (api_key, user, ip).', labelNames: ['principal'], registers });
    this.#loginLockouts = new Counter({ name: 'inferno_login_lockouts_total', help: 'Login attempts refused because the username or client IP is locked out after repeated failures.', registers });

    new Gauge({
      name: 'inferno_jobs',
      help: 'Batch jobs in the store, by state.',
      labelNames: ['state'],
      registers,
      async collect() {
        const counts = (await sources().jobs?.countJobsByStatus()) ?? {};
        for (const state of JOB_STATES) this.set({ state }, counts[state] ?? 0);
      },
    });
    this.#jobItems = new Counter({ name: 'inferno_job_items_processed_total', help: 'Requests of batch jobs run, by outcome (succeeded, failed, cancelled).', labelNames: ['outcome'], registers });

    // The cache counts its own lookups; these read its counters (monotonic) at scrape time.
    const cacheCounter = (name: string, help: string, pick: (s: { hits: number; misses: number }) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          const stats = sources().cache?.stats();
          this.reset();
          if (stats) this.inc(pick(stats));
        },
      });
    cacheCounter('inferno_cache_hits_total', 'Response cache lookups answered from the cache.', (s) => s.hits);
    cacheCounter('inferno_cache_misses_total', 'Response cache lookups that found nothing.', (s) => s.misses);
    new Gauge({ name: 'inferno_cache_entries', help: 'Answers in the response cache.', registers, collect() { this.set(sources().cache?.stats().entries ?? 0); } });
    new Gauge({ name: 'inferno_cache_bytes', help: 'Approximate memory held by the response cache (keys and answers as JSON).', registers, collect() { this.set(sources().cache?.bytes ?? 0); } });
  }

  /** Where the state gauges read from; set once the engine, cache and store exist. */
  watch(sources: MetricSources): void {
    this.#sources = { ...this.#sources, ...sources };
  }

  modelLabel(model: string): string {
    return this.#models.label(model);
  }

  // ---- Events ---------------------------------------------------------------------------------

  httpStarted(): void {
    this.#inFlight++;
  }

  httpFinished(route: string | undefined, method: string, status: number, seconds: number): void {
    this.#inFlight--;
    const labels = { route: route ?? UNMATCHED_ROUTE, method: methodLabel(method) };
    this.#httpRequests.inc({ ...labels, status: statusLabel(status) });
    this.#httpDuration.observe(labels, seconds);
  }

  generation(model: string, api: ApiFamily, g: GenerationObservation): void {
    const labels = { model: this.#models.label(model), api };
    this.#promptTokens.inc(labels, g.promptTokens);
    this.#generatedTokens.inc(labels, g.completionTokens);
    this.#inferenceRequests.inc({ ...labels, finish_reason: g.finishReason });
    if (g.finishReason === 'cancelled') this.#cancelled.inc(labels);
    if (g.completionTokens > 0) this.#timeToFirstToken.observe(labels, (g.queuedMs + g.promptMs) / 1000);
    if (g.completionTokens > 1) this.#timePerOutputToken.observe(labels, g.generationMs / (g.completionTokens - 1) / 1000);
    this.#generationDuration.observe(labels, g.totalMs / 1000);
  }

  /** A stream that failed after opening; `spent`: the tokens it had read and sent by then. */
  streamFailed(model: string, api: ApiFamily, spent: { promptTokens: number; completionTokens: number }): void {
    const labels = { model: this.#models.label(model), api };
    this.#streamFailures.inc(labels);
    this.#promptTokens.inc(labels, spent.promptTokens);
    this.#generatedTokens.inc(labels, spent.completionTokens);
  }

  embedding(model: string, api: ApiFamily, inputs: number, tokens: number): void {
    const labels = { model: this.#models.label(model), api };
    this.#embeddingRequests.inc(labels);
    this.#embeddingInputs.inc(labels, inputs);
    this.#embeddingTokens.inc(labels, tokens);
  }

  queueWaited(model: string, seconds: number): void {
    this.#queueWait.observe({ model: this.#models.label(model) }, seconds);
  }

  modelLoaded(model: string, seconds: number): void {
    this.#modelLoad.observe({ model: this.#models.label(model) }, seconds);
  }

  modelLoadFailed(model: string): void {
    this.#modelLoadFailures.inc({ model: this.#models.label(model) });
  }

  authenticationFailed(kind: AuthFailureKind): void {
    this.#authFailures.inc({ kind });
  }

  rateLimited(principal: PrincipalType): void {
    this.#rateLimited.inc({ principal });
  }

  loginLockedOut(): void {
    this.#loginLockouts.inc();
  }

  jobItemProcessed(outcome: 'succeeded' | 'failed' | 'cancelled'): void {
    this.#jobItems.inc({ outcome });
  }

  // ---- Exposition -----------------------------------------------------------------------------

  /** The Prometheus text exposition format 0.0.4. */
  prometheus(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The JSON summary, computed from the same registry as the exposition. */
  async summary(): Promise<MetricsSummary> {
    const families = new Map((await this.registry.getMetricsAsJSON()).map((m) => [m.name, m]));
    const values = (name: string) => (families.get(name) as MetricObjectWithValues<MetricValue<string>> | undefined)?.values ?? [];
    const sum = (name: string, where: (labels: Partial<Record<string, string | number>>) => boolean = () => true) =>
      values(name).reduce((n, v) => (where(v.labels) ? n + v.value : n), 0);
    const groupBy = (name: string, label: string) => {
      const out: Record<string, number> = {};
      for (const v of values(name)) out[String(v.labels[label])] = (out[String(v.labels[label])] ?? 0) + v.value;
      return out;
    };
    const distribution = (name: string, scale: number) => summarizeHistogram(values(name), scale);

    const http = distribution('inferno_http_request_duration_seconds', 1000);
    const inFlight = sum('inferno_http_requests_in_flight');
    const byStatus = groupBy('inferno_http_requests_total', 'status');
    const authFailures = sum('inferno_authentication_failures_total');
    const rateLimited = sum('inferno_rate_limited_total');
    const models = [...new Set(values('inferno_inference_requests_total').map((v) => String(v.labels.model)))].sort();
    const jobs = groupBy('inferno_jobs', 'state');
    return {
      uptime_seconds: (Date.now() - this.startedAt) / 1000,
      // Received: answered ones plus those in flight.
      requests_total: http.count + inFlight,
      requests_in_flight: inFlight,
      responses_by_status: byStatus,
      rate_limited_total: rateLimited,
      authentication_failures_total: authFailures,
      request_duration_ms: http,
      inference: {
        requests_total: sum('inferno_inference_requests_total'),
        prompt_tokens_total: sum('inferno_prompt_tokens_total'),
        generated_tokens_total: sum('inferno_generated_tokens_total'),
        cancelled_total: sum('inferno_generations_cancelled_total'),
        stream_failures_total: sum('inferno_stream_failures_total'),
        by_finish_reason: groupBy('inferno_inference_requests_total', 'finish_reason'),
        by_api: groupBy('inferno_inference_requests_total', 'api'),
        time_to_first_token_ms: distribution('inferno_time_to_first_token_seconds', 1000),
        time_per_output_token_ms: distribution('inferno_time_per_output_token_seconds', 1000),
        generation_duration_ms: distribution('inferno_generation_duration_seconds', 1000),
        models: models.map((model) => {
          const of = (l: Partial<Record<string, string | number>>) => l.model === model;
          return {
            model,
            requests_total: sum('inferno_inference_requests_total', of),
            prompt_tokens_total: sum('inferno_prompt_tokens_total', of),
            generated_tokens_total: sum('inferno_generated_tokens_total', of),
          };
        }),
      },
      engine: {
        models_loaded: sum('inferno_models_loaded'),
        queue_depth: sum('inferno_queue_depth'),
        sequences_busy: sum('inferno_sequences_busy'),
        sequences_total: sum('inferno_sequences_total'),
        queue_wait_ms: distribution('inferno_queue_wait_seconds', 1000),
        model_loads_total: summarizeHistogram(values('inferno_model_load_seconds'), 1).count,
        model_load_failures_total: sum('inferno_model_load_failures_total'),
        embedding_requests_total: sum('inferno_embedding_requests_total'),
      },
      security: {
        authentication_failures_by_kind: groupBy('inferno_authentication_failures_total', 'kind'),
        rate_limited_by_principal: groupBy('inferno_rate_limited_total', 'principal'),
        login_lockouts_total: sum('inferno_login_lockouts_total'),
      },
      cache: {
        hits_total: sum('inferno_cache_hits_total'),
        misses_total: sum('inferno_cache_misses_total'),
        entries: sum('inferno_cache_entries'),
        bytes: sum('inferno_cache_bytes'),
      },
      jobs: {
        queued: jobs.queued ?? 0,
        running: jobs.running ?? 0,
        succeeded: jobs.succeeded ?? 0,
        failed: jobs.failed ?? 0,
        cancelled: jobs.cancelled ?? 0,
        items_processed_total: sum('inferno_job_items_processed_total'),
      },
    };
  }
}

/**
 * Count, sum and estimated quantiles of a histogram (all its label sets together), as Prometheus'
 * `histogram_quantile` estimates them: linear within the bucket the rank falls in. `scale`
 * converts seconds to the unit wanted (1000: milliseconds).
 */
export function summarizeHistogram(values: readonly MetricValue<string>[], scale: number): MetricsDistribution {
  const buckets = new Map<number, number>();
  let count = 0;
  let total = 0;
  for (const v of values) {
    const name = (v as { metricName?: string }).metricName ?? '';
    if (name.endsWith('_bucket')) {
      const le = v.labels.le === '+Inf' ? Infinity : Number(v.labels.le);
      buckets.set(le, (buckets.get(le) ?? 0) + v.value);
    } else if (name.endsWith('_count')) count += v.value;
    else if (name.endsWith('_sum')) total += v.value;
  }
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const quantile = (q: number) => {
    if (count === 0) return 0;
    const rank = q * count;
    let lower = 0;
    let below = 0;
    for (const bound of bounds) {
      const cumulative = buckets.get(bound)!;
      if (cumulative >= rank) {
        // Beyond the last finite bucket nothing is known but its lower edge.
        if (bound === Infinity) return lower * scale;
        const inBucket = cumulative - below;
        return (lower + (bound - lower) * (inBucket === 0 ? 0 : (rank - below) / inBucket)) * scale;
      }
      lower = bound;
      below = cumulative;
    }
    return lower * scale;
  };
  const round = (n: number) => Math.round(n * 1000) / 1000;
  return { count, sum: round(total * scale), p50: round(quantile(0.5)), p95: round(quantile(0.95)), p99: round(quantile(0.99)) };
}
