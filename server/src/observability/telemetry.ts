import type { GenerationResult } from '../engine/engine.js';
import type { AppContext } from '../http/context.js';
import { readCredential } from '../http/authenticate.js';
import type { ApiFamily, AuthFailureKind, PrincipalType, ServerMetrics } from './metrics.js';
import { NO_TRACING, type Tracing } from './tracing.js';
import type { UsageRecorder } from './usage.js';

/** What an inference request's log line adds (never prompt or generated text). */
export interface InferenceLogFields {
  model: string;
  prompt_tokens: number;
  generated_tokens: number;
  finish_reason: string;
  time_to_first_token_ms: number | null;
  tokens_per_second: number;
  cached?: boolean;
}

type Usage = GenerationResult['usage'];

/** `/v1/...` is the OpenAI-compatible family; the rest of the API is native. */
export const apiFamilyOf = (ctx: AppContext): ApiFamily => (ctx.path.startsWith('/v1/') ? 'openai' : 'native');

/**
 * The one place the request path reports to metrics, usage accounting, traces and the log line:
 * each event of a request is one call here, so routes and middleware carry a single line each.
 * `metrics` is undefined when `[metrics] enabled` is false, `usage` when usage accounting is off.
 */
export class Telemetry {
  constructor(
    readonly metrics: ServerMetrics | undefined,
    readonly usage: UsageRecorder | undefined,
    readonly tracing: Tracing = NO_TRACING,
  ) {}

  /** The route template of a request that never reached its router (refused before routing); set by the app. */
  routeOf: (path: string, method: string) => string | undefined = () => undefined;

  /** A request arrived (before anything else ran). */
  httpStarted(): void {
    this.metrics?.httpStarted();
  }

  /** A response is finished (or the client left). */
  httpFinished(ctx: AppContext, seconds: number): void {
    const metrics = this.metrics;
    if (!metrics) return;
    const matched = (ctx as { _matchedRoute?: unknown })._matchedRoute;
    const route = typeof matched === 'string' ? matched : this.routeOf(ctx.path, ctx.method);
    metrics.httpFinished(route, ctx.method, ctx.status, seconds);
    if (ctx.status === 401) metrics.authenticationFailed(authFailureKind(ctx, route));
  }

  /** A response on a known route, answered before Koa (the liveness probe), is finished. */
  httpFinishedOn(route: string, method: string, status: number, seconds: number): void {
    this.metrics?.httpFinished(route, method, status, seconds);
  }

  /** The rate limiter refused a request. */
  rateLimited(ctx: AppContext): void {
    const principal = ctx.state.principal;
    const type: PrincipalType = principal?.apiKey ? 'api_key' : principal ? 'user' : 'ip';
    this.metrics?.rateLimited(type);
  }

  /** A login was refused because its username or address is locked out. */
  loginLockedOut(): void {
    this.metrics?.loginLockedOut();
  }

  /** A generation finished (stopped, hit its length, or was cancelled) for this request. */
  generation(ctx: AppContext, model: string, result: GenerationResult): void {
    this.generations(ctx, model, [result], result.usage);
  }

  /**
   * A request's generations (one per choice) finished: each is measured as the engine work it was;
   * usage is accounted once, as the answer reports it (a prompt's tokens once, however many choices).
   */
  generations(ctx: AppContext, model: string, results: readonly GenerationResult[], answered: Usage): void {
    const api = apiFamilyOf(ctx);
    for (const result of results) {
      this.#measure(model, api, result);
      this.tracing.generation(ctx, model, result);
    }
    this.#account(ctx, model, answered);
    const first = results[0];
    if (!first) return;
    ctx.state.inference = {
      model,
      prompt_tokens: answered.prompt_tokens,
      generated_tokens: answered.completion_tokens,
      finish_reason: first.finishReason,
      time_to_first_token_ms: first.usage.completion_tokens > 0 ? round(first.timings.queued_ms + first.timings.prompt_ms) : null,
      tokens_per_second: first.timings.tokens_per_second,
    };
  }

  /**
   * A stream that had opened ended with an error event instead of its answer (its status was 200).
   * `spent`: what its generations had made when an unload or the shutdown cut them short (each
   * prompt whole, as a cancelled generation counts it, and the tokens sent): the engine's work, and
   * the usage as the answer would have reported it. Those tokens are its caller's usage, though
   * the request counts as no generation.
   */
  streamFailed(ctx: AppContext, model: string, spent?: { results: readonly GenerationResult[]; usage: Usage }): void {
    const tokens = (key: 'prompt_tokens' | 'completion_tokens') => spent?.results.reduce((sum, result) => sum + result.usage[key], 0) ?? 0;
    this.metrics?.streamFailed(model, apiFamilyOf(ctx), { promptTokens: tokens('prompt_tokens'), completionTokens: tokens('completion_tokens') });
    if (spent && spent.usage.total_tokens > 0) this.#account(ctx, model, spent.usage);
  }

  /** A native inference request answered from the response cache: no engine work, usage as answered. */
  cachedAnswer(ctx: AppContext, model: string, usage: Usage, finishReason: string): void {
    this.#account(ctx, model, usage);
    ctx.state.inference = { model, prompt_tokens: usage.prompt_tokens, generated_tokens: usage.completion_tokens, finish_reason: finishReason, time_to_first_token_ms: null, tokens_per_second: 0, cached: true };
  }

  embedding(ctx: AppContext, model: string, inputs: number, promptTokens: number): void {
    this.metrics?.embedding(model, apiFamilyOf(ctx), inputs, promptTokens);
    this.#account(ctx, model, { prompt_tokens: promptTokens, completion_tokens: 0, total_tokens: promptTokens });
  }

  /** A batch job's request was run for its owner. */
  jobGeneration(userId: string, model: string, result: GenerationResult): void {
    this.#measure(model, 'job', result);
    const { usage } = result;
    this.usage?.record({ userId, keyId: null, model, promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens });
  }

  jobItemProcessed(outcome: 'succeeded' | 'failed' | 'cancelled'): void {
    this.metrics?.jobItemProcessed(outcome);
  }

  /** One generation's tokens and timings into the metrics. */
  #measure(model: string, api: Parameters<ServerMetrics['generation']>[1], result: GenerationResult): void {
    const { usage, timings } = result;
    this.metrics?.generation(model, api, {
      finishReason: result.finishReason,
      promptTokens: usage.prompt_tokens,
      completionTokens: usage.completion_tokens,
      queuedMs: timings.queued_ms,
      promptMs: timings.prompt_ms,
      generationMs: timings.generation_ms,
      totalMs: timings.total_ms,
    });
  }

  #account(ctx: AppContext, model: string, usage: Usage): void {
    const principal = ctx.state.principal;
    if (!principal) return;
    this.usage?.record({ userId: principal.user.id, keyId: principal.apiKey?.id ?? null, model, promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens });
  }
}

const round = (ms: number) => Math.round(ms * 100) / 100;

function authFailureKind(ctx: AppContext, route: string | undefined): AuthFailureKind {
  if (route === '/api/v1/auth/login') return 'password';
  const credential = readCredential(ctx).kind;
  return credential === 'none' ? 'missing' : credential;
}
