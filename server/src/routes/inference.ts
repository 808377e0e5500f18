import { randomUUID } from 'node:crypto';
import type { Router } from '@koa/router';
import { createRouter } from '../http/router.js';
import type { ResponseCache } from '../cache/response-cache.js';
import type { EmbeddingsRequest, InferenceRequest, InferenceResponse } from '../gen/types.gen.js';
import { zCreateEmbeddingsBody, zCreateInferenceBody } from '../gen/zod.gen.js';
import type { Config } from '../config.js';
import { GrammarCompileError, ModelNotFoundError, ModelUnloadedError, ModelUnusableError, partialOf, PromptTooLongError, ShuttingDownError, type ChatMessage, type GenerationRequest, type GenerationResult, type InferenceEngine, type Reservation } from '../engine/engine.js';
import { InsufficientMemoryError } from 'node-llama-cpp';
import { QueueFullError } from '../engine/sequence-pool.js';
import { requireAuth, requirePermission } from '../http/authenticate.js';
import type { AppContext, AppState } from '../http/context.js';
import { ApiError, notFound, validationError } from '../http/errors.js';
import { clientGone, EventStream, StreamClosedError } from '../http/event-stream.js';
import { errorBody, toApiError } from '../http/error-handler.js';
import { jsonBody } from '../http/json-body.js';
import { validate } from '../http/validate.js';
import type { RouteDeps } from './deps.js';
import { planOutput, readToolCalls, type OutputPaths, type ToolPlan } from './output-plan.js';

const HEARTBEAT_MS = 5_000;


/** An embedding input too long for the context, named as the request did: `input` or `input[i]`. */
export function embeddingInputError(error: unknown, input: string | readonly string[]): unknown {
  if (!(error instanceof PromptTooLongError) || error.inputIndex === undefined) return error;
  const path = typeof input === 'string' ? 'body.input' : `body.input[${error.inputIndex}]`;
  return validationError([{ path, message: error.message }], 'An input does not fit the context');
}

/** Engine failures as API errors: unknown model 404, unusable model 409, full queue 503 with `Retry-After`. */
export function engineError(error: unknown, parallel: number): unknown {
  if (error instanceof ModelNotFoundError) return notFound(error.message);
  if (error instanceof ModelUnusableError) return new ApiError('CONFLICT', error.message, { model: error.model, reason: error.reason });
  if (error instanceof PromptTooLongError) {
    return validationError([{ path: 'body', message: error.message }], 'The prompt does not fit the context');
  }
  if (error instanceof GrammarCompileError) return validationError([{ path: 'body', message: error.message }], 'The schema cannot be enforced');
  if (error instanceof ModelUnloadedError) return new ApiError('SERVICE_UNAVAILABLE', error.message, null, { 'Retry-After': '1' });
  if (error instanceof ShuttingDownError) return new ApiError('SERVICE_UNAVAILABLE', error.message, null, { 'Retry-After': '5' });
  if (error instanceof InsufficientMemoryError) return new ApiError('SERVICE_UNAVAILABLE', 'Not enough memory to load the model now', null, { 'Retry-After': '30' });
  if (error instanceof QueueFullError) {
    const retryAfter = String(1 + Math.floor(error.waiting / Math.max(1, parallel)));
    return new ApiError('SERVICE_UNAVAILABLE', 'The server is busy: every sequence is in use and the wait queue is full', { waiting: error.waiting }, { 'Retry-After': retryAfter });
  }
  return error;
}

/**
 * What a stream says when generation fails after it opened: the API error for known failures
 * (an unload is a 503 worth a retry), a generic INTERNAL_ERROR for anything else. In the error
 * format of the request's API family.
 */
export function streamFailure(ctx: AppContext, error: unknown, parallel: number, logger: RouteDeps['logger']): unknown {
  const apiError = toApiError(engineError(error, parallel));
  if (apiError.status === 500) logger.error({ err: error, request_id: ctx.state.requestId }, 'generation failed mid-stream');
  else logger.warn({ code: apiError.code, request_id: ctx.state.requestId }, 'stream ended by an error event');
  return errorBody(ctx, apiError.status === 500 ? new ApiError('INTERNAL_ERROR', 'Generation failed') : apiError);
}

/** An engine request with how its tool calls are read back (see output-plan.ts). */
export type PlannedGeneration = GenerationRequest & { toolPlan?: ToolPlan };

/** The engine's view of chat messages, after checking that tool results answer earlier calls. */
export function toEngineMessages(messages: readonly ChatMessage[], path: string): ChatMessage[] {
  const calls = new Set<string>();
  messages.forEach((message, index) => {
    if (message.toolCalls?.length && message.role !== 'assistant') {
      throw validationError([{ path: `${path}[${index}].tool_calls`, message: 'Only assistant messages carry tool calls' }]);
    }
    for (const call of message.toolCalls ?? []) calls.add(call.id);
    if (message.role === 'tool' && (message.toolCallId === undefined || !calls.has(message.toolCallId))) {
      throw validationError([{ path: `${path}[${index}].tool_call_id`, message: 'A tool message must name the id of a tool call of an earlier assistant message' }]);
    }
  });
  return [...messages];
}

/** A prompt's size in characters: texts, and the arguments of earlier tool calls. */
const messagesLength = (messages: readonly ChatMessage[]) =>
  messages.reduce((n, m) => n + m.content.length + (m.toolCalls ?? []).reduce((k, c) => k + JSON.stringify(c.arguments ?? null).length, 0), 0);

const NATIVE_PATHS: OutputPaths = { schema: 'body.response_format.schema', tools: 'body.tools', toolParameters: (i) => `body.tools[${i}].parameters`, toolChoice: 'body.tool_choice' };

/** Checks a request against the limits and turns it into an engine request; `paths` name its fields in errors. */
export function toGenerationRequest(body: InferenceRequest, limits: Config['limits'], paths: OutputPaths = NATIVE_PATHS): PlannedGeneration {
  if ((body.prompt === undefined) === (body.messages === undefined)) {
    throw validationError([{ path: 'body', message: 'Give exactly one of prompt and messages' }]);
  }
  const messages =
    body.messages &&
    toEngineMessages(
      body.messages.map((m) => ({
        role: m.role,
        content: m.content,
        ...(m.tool_calls && { toolCalls: m.tool_calls }),
        ...(m.tool_call_id !== undefined && { toolCallId: m.tool_call_id }),
      })),
      'body.messages',
    );
  const length = body.prompt?.length ?? messagesLength(messages!);
  if (length > limits.max_prompt_chars) {
    throw validationError(
      [{ path: body.prompt !== undefined ? 'body.prompt' : 'body.messages', message: `The prompt has ${length} characters; the limit is ${limits.max_prompt_chars}` }],
      'The prompt is too long',
    );
  }
  const plan = planOutput(
    {
      responseFormat: body.response_format,
      tools: body.tools,
      toolChoice: body.tool_choice,
      parallelToolCalls: body.parallel_tool_calls,
      chat: messages !== undefined,
    },
    limits,
    paths,
  );
  return {
    model: body.model,
    prompt: body.prompt,
    messages,
    maxTokens: body.max_tokens ?? 256,
    temperature: body.temperature,
    topP: body.top_p,
    topK: body.top_k,
    stop: typeof body.stop === 'string' ? [body.stop] : body.stop,
    seed: body.seed,
    ...plan.generation,
    ...(plan.tools && { toolPlan: plan.tools }),
  };
}

/** A new answer id (`inf_` and 32 hex digits). */
export const newInferenceId = () => `inf_${randomUUID().replaceAll('-', '')}`;

/** A finished generation as the API answers it: its text, or the tool calls it made. */
export function presentInference(id: string, model: string, result: GenerationResult, toolPlan?: ToolPlan): InferenceResponse {
  const toolCalls = readToolCalls(toolPlan, result);
  return {
    id,
    object: 'inference',
    created: Math.floor(Date.now() / 1000),
    model,
    text: toolCalls && toolPlan?.mode !== 'auto' ? '' : result.text,
    ...(toolCalls && { tool_calls: toolCalls as InferenceResponse['tool_calls'] }),
    finish_reason: toolCalls ? 'tool_calls' : result.finishReason,
    usage: result.usage,
    timings: result.timings,
  };
}

/**
 * Reserves a sequence; if that takes a moment (model loading, queue), opens the event stream
 * first and keeps it alive with heartbeats. Errors that come at once (unknown model, full queue)
 * are still plain HTTP errors.
 */
export async function reserveForStream(ctx: AppContext, engine: InferenceEngine, model: string, signal: AbortSignal, parallel: number): Promise<{ reservation: Reservation; stream: EventStream }> {
  const reserving = engine.reserve(model, signal);
  let timer: NodeJS.Timeout | undefined;
  const early = await Promise.race([
    reserving.then(() => 'ready' as const, () => 'failed' as const),
    new Promise<'waiting'>((resolve) => (timer = setTimeout(resolve, 200, 'waiting'))),
  ]);
  clearTimeout(timer);
  if (early === 'failed') await reserving.catch((error) => Promise.reject(engineError(error, parallel)));
  const stream = new EventStream(ctx);
  // Ready at once, the headers go out with the first event; a wait opens the stream now.
  if (early === 'waiting') stream.open();
  // Heartbeats for the stream's whole life: a long prompt evaluation sends no events either, and
  // clients (the SDK's idle timeout, proxies) must not take the silence for a dead connection.
  stream.startHeartbeat(HEARTBEAT_MS);
  try {
    const reservation = await reserving;
    return { reservation, stream };
  } catch (error) {
    // The stream is open, so the error can only travel as an event.
    if (!signal.aborted) stream.send('error', errorBody(ctx, toApiError(engineError(error, parallel))));
    stream.end();
    throw new StreamClosedError(error);
  }
}

export function inferenceRoutes(deps: RouteDeps, engine: InferenceEngine, cache: ResponseCache): Router<AppState> {
  const { config, store, telemetry } = deps;
  const router = createRouter();
  const body = jsonBody(() => config.limits.max_body_bytes);

  router.post('/inference', requireAuth, requirePermission(store, 'run_inference'), body, validate({ body: zCreateInferenceBody }), async (ctx, next) => {
    const request = ctx.state.input.body as InferenceRequest;
    if (request.stream) return requirePermission(store, 'use_streaming')(ctx, next);
    return next();
  }, async (ctx) => {
    const started = performance.now();
    const request = ctx.state.input.body as InferenceRequest;
    const generation = toGenerationRequest(request, config.limits);
    const id = newInferenceId();
    const signal = clientGone(ctx);
    const parallel = config.engine.parallel;

    const cacheKey = request.stream ? undefined : await cache.keyOf(generation);
    const cached = cacheKey === undefined ? undefined : cache.get(cacheKey);
    if (cached) {
      const totalMs = Math.round((performance.now() - started) * 100) / 100;
      ctx.set('X-Cache', 'hit');
      telemetry.cachedAnswer(ctx, request.model, cached.usage, cached.finish_reason);
      ctx.body = { id, object: 'inference', created: Math.floor(Date.now() / 1000), ...cached, timings: { queued_ms: 0, prompt_ms: 0, generation_ms: 0, total_ms: totalMs, tokens_per_second: 0 } } satisfies InferenceResponse;
      return;
    }

    try {
      await engine.checkPrompt(generation);
    } catch (error) {
      throw engineError(error, parallel);
    }

    if (!request.stream) {
      let result: GenerationResult;
      try {
        result = await engine.generate(generation, { signal });
      } catch (error) {
        throw engineError(error, parallel);
      }
      telemetry.generation(ctx, request.model, result);
      const response = presentInference(id, request.model, result, generation.toolPlan);
      // A generation cut short (the client left) is no answer to keep.
      if (cacheKey !== undefined && result.finishReason !== 'cancelled') {
        cache.set(cacheKey, { model: response.model, text: response.text, ...(response.tool_calls && { tool_calls: response.tool_calls }), finish_reason: response.finish_reason, usage: response.usage });
      }
      ctx.set('X-Cache', 'miss');
      ctx.body = response;
      return;
    }

    const { reservation, stream } = await reserveForStream(ctx, engine, request.model, signal, parallel);
    try {
      // A forced call's text is its arguments: they come whole in the `done` event, not as tokens.
      const forced = generation.toolPlan && generation.toolPlan.mode !== 'auto';
      const result = await reservation.generate(generation, { signal, onText: (text) => forced || stream.send('token', { text }) });
      telemetry.generation(ctx, request.model, result);
      const { tool_calls, finish_reason } = presentInference(id, request.model, result, generation.toolPlan);
      if (forced && !tool_calls && result.text) stream.send('token', { text: result.text }); // cut off: the partial JSON
      stream.send('done', { id, model: request.model, ...(tool_calls && { tool_calls }), finish_reason, usage: result.usage, timings: result.timings });
    } catch (error) {
      // Cut short by an unload or the shutdown: the tokens it sent are still its caller's usage.
      const partial = partialOf(error);
      telemetry.streamFailed(ctx, request.model, partial && { results: [partial], usage: partial.usage });
      stream.send('error', streamFailure(ctx, error, parallel, deps.logger));
    } finally {
      reservation.release();
      stream.end();
    }
  });

  router.post('/embeddings', requireAuth, requirePermission(store, 'run_inference'), body, validate({ body: zCreateEmbeddingsBody }), async (ctx) => {
    const request = ctx.state.input.body as EmbeddingsRequest;
    const inputs = typeof request.input === 'string' ? [request.input] : request.input;
    const tooLong = inputs.findIndex((input) => input.length > config.limits.max_prompt_chars);
    if (tooLong >= 0) {
      throw validationError([{ path: typeof request.input === 'string' ? 'body.input' : `body.input[${tooLong}]`, message: `Longer than the limit of ${config.limits.max_prompt_chars} characters` }]);
    }
    try {
      const { vectors, promptTokens } = await engine.embed(request.model, inputs, clientGone(ctx));
      telemetry.embedding(ctx, request.model, inputs.length, promptTokens);
      ctx.body = { object: 'list', model: request.model, data: vectors.map((embedding, index) => ({ index, embedding })), usage: { prompt_tokens: promptTokens, total_tokens: promptTokens } };
    } catch (error) {
      throw engineError(embeddingInputError(error, request.input), config.engine.parallel);
    }
  });

  return router;
}
