import { randomUUID } from 'node:crypto';
import type { Router } from '@koa/router';
import { createRouter } from '../http/router.js';
import type { ZodType } from 'zod';
import type {
  ChatMessage,
  Model,
  OpenAiChatCompletion,
  OpenAiChatCompletionChunk,
  OpenAiChatCompletionRequest,
  OpenAiChatMessage,
  OpenAiCompletion,
  OpenAiCompletionRequest,
  OpenAiEmbeddingList,
  OpenAiEmbeddingRequest,
  OpenAiFinishReason,
  OpenAiGenerationOptions,
  OpenAiModel,
} from '../gen/types.gen.js';
import { zOpenaiCreateChatCompletionBody, zOpenaiCreateCompletionBody, zOpenaiCreateEmbeddingsBody, zOpenaiRetrieveModelPath } from '../gen/zod.gen.js';
import { ModelNotFoundError, type FinishReason, type GenerationRequest, type GenerationResult, type InferenceEngine } from '../engine/engine.js';
import type { ModelCatalog } from '../engine/model-catalog.js';
import { requireAuth, requirePermission } from '../http/authenticate.js';
import type { AppContext, AppMiddleware, AppState } from '../http/context.js';
import { ApiError, validationError } from '../http/errors.js';
import { clientGone, type EventStream } from '../http/event-stream.js';
import { jsonBody } from '../http/json-body.js';
import { OpenAIApiError } from '../http/openai-errors.js';
import { validate } from '../http/validate.js';
import type { RouteDeps } from './deps.js';
import { engineError, reserveForStream, streamFailure, toGenerationRequest } from './inference.js';

/** OpenAI's default sampling temperature (the native API's is 0.8). */
const DEFAULT_TEMPERATURE = 1;

/**
 * Parses an OpenAI request body with its generated schema. Unlike `validate`, unknown fields are
 * dropped rather than refused: OpenAI clients send many that Inferno has no use for.
 */
function parseBody(schema: ZodType): AppMiddleware {
  return async (ctx, next) => {
    const result = schema.safeParse(ctx.state.input.body);
    if (!result.success) {
      throw validationError(result.error.issues.map((issue) => ({ path: formatPath(issue.path), message: issue.message })));
    }
    ctx.state.input.body = result.data;
    await next();
  };
}

const formatPath = (path: readonly PropertyKey[]) =>
  path.reduce<string>((out, part) => (typeof part === 'number' ? `${out}[${part}]` : `${out}.${String(part)}`), 'body');

const modelNotFound = (model: string) =>
  new OpenAIApiError('NOT_FOUND', `The model '${model}' does not exist`, { param: 'model', code: 'model_not_found' });

const toOpenAIModel = (model: Model): OpenAiModel => ({
  id: model.id,
  object: 'model',
  created: Math.floor(Date.parse(model.modified_at) / 1000),
  owned_by: 'inferno',
});

// The client is gone when a generation is cancelled, so whatever it would read says `stop`.
const toFinishReason = (reason: FinishReason): OpenAiFinishReason => (reason === 'length' ? 'length' : 'stop');

const now = () => Math.floor(Date.now() / 1000);
const newId = (prefix: string) => `${prefix}-${randomUUID().replaceAll('-', '')}`;

/** A message's text: a string, the text parts joined, or nothing (an assistant turn that only called tools). */
function toChatMessage(message: OpenAiChatMessage): ChatMessage {
  const content = message.content ?? '';
  return {
    role: message.role === 'developer' ? 'system' : message.role,
    content: typeof content === 'string' ? content : content.map((part) => part.text).join(''),
  };
}

/** The sampling fields of either request, in the native request's terms (null means default). */
function samplingOf(request: OpenAiGenerationOptions & { max_completion_tokens?: number | null }) {
  return {
    max_tokens: request.max_completion_tokens ?? request.max_tokens ?? undefined,
    temperature: request.temperature ?? DEFAULT_TEMPERATURE,
    top_p: request.top_p ?? undefined,
    stop: request.stop ?? undefined,
    seed: request.seed ?? undefined,
  };
}

/** Writes one OpenAI server-sent event: unnamed, `data:` only. */
function sendData(ctx: AppContext, stream: EventStream, data: unknown): void {
  if (!stream.closed) ctx.res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
}

/** What a completion route needs to know to answer, whether plainly or as a stream. */
interface Completion<Answer, Chunk> {
  generation: GenerationRequest;
  stream: boolean;
  includeUsage: boolean;
  /** The text to put before the generated text (`echo`), sent as the first piece of a stream. */
  prefix?: string;
  answer(result: GenerationResult): Answer;
  firstChunk?(): Chunk;
  textChunk(text: string): Chunk;
  lastChunk(reason: OpenAiFinishReason): Chunk;
  /** The chunk after the last with `include_usage`: no choices, only the usage. */
  usageChunk(usage: GenerationResult['usage']): Chunk;
}

export function openAIRoutes(deps: RouteDeps, catalog: ModelCatalog, engine: InferenceEngine): Router<AppState> {
  const { config, store } = deps;
  const router = createRouter();
  const body = jsonBody(() => config.limits.max_body_bytes);
  const can = (permission: Parameters<typeof requirePermission>[1]) => [requireAuth, requirePermission(store, permission)];
  const parallel = () => config.engine.parallel;

  const engineFailure = (error: unknown, model: string) => {
    // `reserveForStream` has already turned an unknown model into a native 404.
    if (error instanceof ModelNotFoundError || (error instanceof ApiError && error.code === 'NOT_FOUND')) return modelNotFound(model);
    return engineError(error, parallel());
  };

  /** Streaming needs `use_streaming` on top of the route's permission, as in the native API. */
  const streamingNeedsPermission: AppMiddleware = async (ctx, next) => {
    const { stream } = ctx.state.input.body as { stream?: boolean | null };
    if (stream) return requirePermission(store, 'use_streaming')(ctx, next);
    return next();
  };

  async function complete<Answer, Chunk>(ctx: AppContext, completion: Completion<Answer, Chunk>) {
    const { generation } = completion;
    const signal = clientGone(ctx);
    try {
      await engine.checkPrompt(generation);
    } catch (error) {
      throw engineFailure(error, generation.model);
    }
    if (!completion.stream) {
      let result: GenerationResult;
      try {
        result = await engine.generate(generation, { signal });
      } catch (error) {
        throw engineFailure(error, generation.model);
      }
      deps.telemetry.generation(ctx, generation.model, result);
      ctx.body = completion.answer(result);
      return;
    }

    let opened;
    try {
      opened = await reserveForStream(ctx, engine, generation.model, signal, parallel());
    } catch (error) {
      throw engineFailure(error, generation.model);
    }
    const { reservation, stream } = opened;
    // With `include_usage`, OpenAI marks every chunk but the last with `usage: null`.
    const send = (chunk: Chunk) => sendData(ctx, stream, completion.includeUsage ? { ...chunk, usage: null } : chunk);
    try {
      if (completion.firstChunk) send(completion.firstChunk());
      if (completion.prefix) send(completion.textChunk(completion.prefix));
      const result = await reservation.generate(generation, { signal, onText: (text) => text && send(completion.textChunk(text)) });
      deps.telemetry.generation(ctx, generation.model, result);
      send(completion.lastChunk(toFinishReason(result.finishReason)));
      if (completion.includeUsage) sendData(ctx, stream, completion.usageChunk(result.usage));
      sendData(ctx, stream, '[DONE]');
    } catch (error) {
      deps.telemetry.streamFailed(ctx, generation.model);
      sendData(ctx, stream, streamFailure(ctx, error, parallel(), deps.logger));
    } finally {
      reservation.release();
      stream.end();
    }
  }

  router.get('/models', ...can('read_models'), async (ctx) => {
    ctx.body = { object: 'list', data: (await catalog.list()).map(toOpenAIModel) };
  });

  router.get('/models/:model', ...can('read_models'), validate({ params: zOpenaiRetrieveModelPath }), async (ctx) => {
    const { model: id } = ctx.state.input.params as { model: string };
    const model = await catalog.get(id);
    if (!model) throw modelNotFound(id);
    ctx.body = toOpenAIModel(model);
  });

  router.post('/chat/completions', ...can('run_inference'), body, parseBody(zOpenaiCreateChatCompletionBody), streamingNeedsPermission, async (ctx) => {
    const request = ctx.state.input.body as OpenAiChatCompletionRequest;
    const generation = toGenerationRequest({ model: request.model, messages: request.messages.map(toChatMessage), ...samplingOf(request) }, config.limits.max_prompt_chars);
    const id = newId('chatcmpl');
    const created = now();
    const chunk = (choice: OpenAiChatCompletionChunk['choices'][number]): OpenAiChatCompletionChunk => ({ id, object: 'chat.completion.chunk', created, model: request.model, choices: [choice] });
    await complete<OpenAiChatCompletion, OpenAiChatCompletionChunk>(ctx, {
      generation,
      stream: request.stream === true,
      includeUsage: request.stream_options?.include_usage === true,
      answer: (result) => ({
        id,
        object: 'chat.completion',
        created,
        model: request.model,
        choices: [{ index: 0, message: { role: 'assistant', content: result.text, refusal: null }, finish_reason: toFinishReason(result.finishReason), logprobs: null }],
        usage: result.usage,
      }),
      firstChunk: () => chunk({ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null, logprobs: null }),
      textChunk: (content) => chunk({ index: 0, delta: { content }, finish_reason: null, logprobs: null }),
      lastChunk: (reason) => chunk({ index: 0, delta: {}, finish_reason: reason, logprobs: null }),
      usageChunk: (usage) => ({ id, object: 'chat.completion.chunk', created, model: request.model, choices: [], usage }),
    });
  });

  router.post('/completions', ...can('run_inference'), body, parseBody(zOpenaiCreateCompletionBody), streamingNeedsPermission, async (ctx) => {
    const request = ctx.state.input.body as OpenAiCompletionRequest;
    const prompt = typeof request.prompt === 'string' ? request.prompt : request.prompt[0];
    const generation = toGenerationRequest({ model: request.model, prompt, ...samplingOf(request) }, config.limits.max_prompt_chars);
    const id = newId('cmpl');
    const created = now();
    const echo = request.echo === true ? prompt : '';
    const chunk = (text: string, finishReason: OpenAiFinishReason | null): OpenAiCompletion => ({
      id,
      object: 'text_completion',
      created,
      model: request.model,
      choices: [{ index: 0, text, finish_reason: finishReason, logprobs: null }],
    });
    await complete<OpenAiCompletion, OpenAiCompletion>(ctx, {
      generation,
      stream: request.stream === true,
      includeUsage: request.stream_options?.include_usage === true,
      prefix: echo,
      answer: (result) => ({ ...chunk(echo + result.text, toFinishReason(result.finishReason)), usage: result.usage }),
      textChunk: (text) => chunk(text, null),
      lastChunk: (reason) => chunk('', reason),
      usageChunk: (usage) => ({ id, object: 'text_completion', created, model: request.model, choices: [], usage }),
    });
  });

  router.post('/embeddings', ...can('run_inference'), body, parseBody(zOpenaiCreateEmbeddingsBody), async (ctx) => {
    const request = ctx.state.input.body as OpenAiEmbeddingRequest;
    const inputs = typeof request.input === 'string' ? [request.input] : request.input;
    const tooLong = inputs.findIndex((input) => input.length > config.limits.max_prompt_chars);
    if (tooLong >= 0) {
      const param = typeof request.input === 'string' ? 'input' : `input[${tooLong}]`;
      throw validationError([{ path: `body.${param}`, message: `Longer than the limit of ${config.limits.max_prompt_chars} characters` }]);
    }
    let embedded;
    try {
      embedded = await engine.embed(request.model, inputs, clientGone(ctx));
    } catch (error) {
      throw engineFailure(error, request.model);
    }
    const size = embedded.vectors[0]?.length ?? 0;
    if (request.dimensions !== undefined && request.dimensions !== size) {
      throw validationError([{ path: 'body.dimensions', message: `The model's embeddings have ${size} dimensions; other sizes are not supported` }]);
    }
    const encode = request.encoding_format === 'base64' ? toBase64 : (vector: number[]) => vector;
    const answer: OpenAiEmbeddingList = {
      object: 'list',
      data: embedded.vectors.map((vector, index) => ({ object: 'embedding', index, embedding: encode(vector) })),
      model: request.model,
      usage: { prompt_tokens: embedded.promptTokens, total_tokens: embedded.promptTokens },
    };
    deps.telemetry.embedding(ctx, request.model, inputs.length, embedded.promptTokens);
    ctx.body = answer;
  });

  return router;
}

/** OpenAI's base64 encoding: the vector's float32 values, little-endian. */
function toBase64(vector: readonly number[]): string {
  const bytes = Buffer.alloc(vector.length * 4);
  vector.forEach((value, i) => bytes.writeFloatLE(value, i * 4));
  return bytes.toString('base64');
}
