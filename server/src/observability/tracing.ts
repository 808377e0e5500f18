import type { GenerationResult } from '../engine/engine.js';
import type { AppContext, AppMiddleware } from '../http/context.js';

/**
 * Request tracing. Off by default: then this is `NO_TRACING`, which does nothing, and the
 * OpenTelemetry SDK is never loaded (`startTracing` imports it only when an endpoint is set).
 */
export interface Tracing {
  readonly enabled: boolean;
  /** The request's root span, current for every middleware and route below it. */
  readonly request: AppMiddleware;
  /** `middleware` inside a child span that ends when it hands on (calls `next`) or finishes. */
  wrap(name: string, middleware: AppMiddleware): AppMiddleware;
  /** Queue wait, prompt evaluation and generation spans of a finished generation, from its timings. */
  generation(ctx: AppContext, model: string, result: GenerationResult): void;
  /** Wraps an object's methods in spans (under the current request's span, if any). */
  instrument<T extends object>(prefix: string, target: T): T;
  /** Exports what is buffered and stops. */
  shutdown(): Promise<void>;
}

export const NO_TRACING: Tracing = {
  enabled: false,
  request: (_ctx, next) => next(),
  wrap: (_name, middleware) => middleware,
  generation: () => undefined,
  instrument: (_prefix, target) => target,
  shutdown: async () => undefined,
};
