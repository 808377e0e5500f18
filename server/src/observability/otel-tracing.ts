import { AsyncLocalStorage } from 'node:async_hooks';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api';
import { parseTraceParent } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import type { GenerationResult } from '../engine/engine.js';
import type { AppContext, AppMiddleware } from '../http/context.js';
import { ApiError } from '../http/errors.js';
import type { Tracing } from './tracing.js';

/**
 * `[tracing] otlp_endpoint` may be the collector's base URL (`http://collector:4318`, as
 * `OTEL_EXPORTER_OTLP_ENDPOINT`) or the full traces URL (`.../v1/traces`).
 */
export function tracesUrl(endpoint: string): string {
  const url = new URL(endpoint);
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/traces';
  return url.toString();
}

/**
 * Spans of a request with the OpenTelemetry SDK, exported in batches over OTLP/HTTP (JSON). The
 * current span is kept in an AsyncLocalStorage of this instance (no global context manager or
 * tracer provider is registered, so several servers in one process keep their traces apart).
 * Attributes carry ids, routes, statuses, models and token counts: never a credential, a path as
 * sent (it could carry anything) or prompt text.
 */
export class OtelTracing implements Tracing {
  readonly enabled = true;
  readonly #provider: TracerProvider;
  readonly #tracer: Tracer;
  readonly #current = new AsyncLocalStorage<Context>();
  /** Each request's span and when (performance.now()) it started, to place spans made from timings. */
  readonly #requests = new WeakMap<AppContext, { span: Span; startedAt: number }>();

  constructor(options: { endpoint: string; serviceName: string; version: string }) {
    this.#provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': options.serviceName, 'service.version': options.version }),
      spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: tracesUrl(options.endpoint) }), scheduledDelayMillis: 1000 })],
    });
    this.#tracer = this.#provider.getTracer('inferno-server', options.version);
  }

  readonly request: AppMiddleware = async (ctx, next) => {
    // A caller's W3C `traceparent` makes this request a part of its trace (a malformed one is ignored).
    const remote = parseTraceParent(ctx.get('traceparent'));
    const parent = remote ? trace.setSpanContext(ROOT_CONTEXT, { ...remote, isRemote: true }) : ROOT_CONTEXT;
    const span = this.#tracer.startSpan(ctx.method, {
      kind: SpanKind.SERVER,
      attributes: { 'http.request.method': ctx.method, 'inferno.request_id': ctx.state.requestId },
    }, parent);
    this.#requests.set(ctx, { span, startedAt: performance.now() });
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      const route = (ctx as { _matchedRoute?: unknown })._matchedRoute;
      if (typeof route === 'string') {
        span.updateName(`${ctx.method} ${route}`);
        span.setAttribute('http.route', route);
      }
      span.setAttribute('http.response.status_code', ctx.status);
      const principal = ctx.state.principal;
      if (principal) span.setAttributes({ 'enduser.id': principal.user.id, 'inferno.auth.method': principal.method, ...(principal.apiKey && { 'inferno.api_key.id': principal.apiKey.id }) });
      if (ctx.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    };
    ctx.res.once('finish', end);
    ctx.res.once('close', end);
    await this.#current.run(trace.setSpan(parent, span), next);
  };

  wrap(name: string, middleware: AppMiddleware): AppMiddleware {
    return async (ctx, next) => {
      const parent = this.#current.getStore() ?? ROOT_CONTEXT;
      const span = this.#tracer.startSpan(name, {}, parent);
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        span.end();
      };
      try {
        // What follows the middleware runs under the request's span again, not under this one.
        await this.#current.run(trace.setSpan(parent, span), () =>
          middleware(ctx, () => {
            end();
            return this.#current.run(parent, next);
          }),
        );
      } catch (error) {
        if (!ended) failed(span, error);
        throw error;
      } finally {
        end();
      }
    };
  }

  generation(ctx: AppContext, model: string, result: GenerationResult): void {
    const parent = this.#current.getStore();
    if (!parent) return;
    const { timings, usage } = result;
    // On the request span's clock (the SDK anchors a trace's times to its root), so that these
    // spans fall inside it however far the wall clock and the monotonic one have drifted apart.
    const request = this.#requests.get(ctx);
    const origin = request ? hrToMs((request.span as unknown as { startTime: [number, number] }).startTime) - request.startedAt : performance.timeOrigin;
    const finished = origin + performance.now();
    const started = finished - timings.total_ms;
    const attributes: Attributes = {
      'gen_ai.request.model': model,
      'gen_ai.usage.input_tokens': usage.prompt_tokens,
      'gen_ai.usage.output_tokens': usage.completion_tokens,
      'gen_ai.response.finish_reasons': [result.finishReason],
      'inferno.request_id': ctx.state.requestId,
    };
    const inference = this.#tracer.startSpan('inference', { startTime: started, attributes }, parent);
    const inside = trace.setSpan(parent, inference);
    // The engine's timings, laid end to end: waiting for a sequence (and a model load), the prompt, the tokens.
    let at = started;
    for (const [name, ms] of [['queue_wait', timings.queued_ms], ['prompt_evaluation', timings.prompt_ms], ['generation', timings.generation_ms]] as const) {
      this.#tracer.startSpan(name, { startTime: at }, inside).end(at + ms);
      at += ms;
    }
    inference.end(finished);
  }

  instrument<T extends object>(prefix: string, target: T): T {
    const wrapped = new Map<PropertyKey, unknown>();
    return new Proxy(target, {
      get: (object, property) => {
        const value = Reflect.get(object, property, object) as unknown;
        if (typeof value !== 'function') return value;
        let fn = wrapped.get(property);
        if (!fn) {
          const name = `${prefix}.${String(property)}`;
          fn = (...args: unknown[]) => this.#inSpan(name, () => (value as (...a: unknown[]) => unknown).apply(object, args));
          wrapped.set(property, fn);
        }
        return fn;
      },
    });
  }

  /** Runs `work` in a child span of the current request (none outside a request). */
  #inSpan(name: string, work: () => unknown): unknown {
    const parent = this.#current.getStore();
    if (!parent) return work();
    const span = this.#tracer.startSpan(name, {}, parent);
    let result: unknown;
    try {
      result = work();
    } catch (error) {
      failed(span, error);
      span.end();
      throw error;
    }
    if (result instanceof Promise) {
      return result.then(
        (value) => (span.end(), value),
        (error: unknown) => (failed(span, error), span.end(), Promise.reject(error)),
      );
    }
    span.end();
    return result;
  }

  async shutdown(): Promise<void> {
    await this.#provider.shutdown();
  }
}

const hrToMs = ([seconds, nanos]: [number, number]) => seconds * 1000 + nanos / 1e6;

/** Marks a span failed with the API error code if there is one: never an error message (it may quote input). */
function failed(span: Span, error: unknown): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof ApiError ? error.code : 'error' });
}
