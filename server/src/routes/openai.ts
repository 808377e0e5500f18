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
  ResponseFormat,
} from '../gen/types.gen.js';
import { zOpenaiCreateChatCompletionBody, zOpenaiCreateCompletionBody, zOpenaiCreateEmbeddingsBody, zOpenaiRetrieveModelPath } from '../gen/zod.gen.js';
import { ModelNotFoundError, ModelUnusableError, partialOf, type FinishReason, type GenerationRequest, type GenerationResult, type InferenceEngine, type Reservation } from '../engine/engine.js';
import type { ModelCatalog } from '../engine/model-catalog.js';
import { requireAuth, requirePermission } from '../http/authenticate.js';
import type { AppContext, AppMiddleware, AppState } from '../http/context.js';
import { ApiError, validationError } from '../http/errors.js';
import { clientGone, type EventStream } from '../http/event-stream.js';
import { jsonBody } from '../http/json-body.js';
import { OpenAIApiError } from '../http/openai-errors.js';
import { bodyIssues, validate } from '../http/validate.js';
import type { RouteDeps } from './deps.js';
import { embeddingInputError, engineError, reserveForStream, streamFailure, toGenerationRequest } from './inference.js';
import { newToolCallId, readToolCalls, type ToolCallOut } from './output-plan.js';

/** OpenAI's default sampling temperature (the native API's is 0.8). */
const DEFAULT_TEMPERATURE = 1;

/**
 * Parses an OpenAI request body with its generated schema and the spec's bounds. Unknown fields
 * are dropped rather than refused (the spec leaves these objects open): OpenAI clients send many
 * that Inferno has no use for.
 */
function parseBody(schema: ZodType): AppMiddleware {
  return async (ctx, next) => {
    const { issues, data } = bodyIssues(schema, ctx.state.input.body);
    if (issues.length > 0) throw validationError(issues);
    ctx.state.input.body = data;
    await next();
  };
}

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

type OpenAiContent = OpenAiChatMessage['content'];

/** A message's text: a string, or its text parts joined; any other kind of part is refused. */
function textOf(content: OpenAiContent, path: string): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  return content
    .map((part, index) => {
      if (part.type !== 'text' || typeof part.text !== 'string') {
        throw validationError([{ path: `${path}[${index}]`, message: `Content parts of type ${part.type} are not supported; supported: text` }]);
      }
      return part.text;
    })
    .join('');
}

/** An OpenAI message in the native API's terms (tool call arguments parsed from their JSON). */
function toNativeMessage(message: OpenAiChatMessage, index: number): ChatMessage {
  const path = `body.messages[${index}]`;
  const toolCalls = message.tool_calls?.map((call, i) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(call.function.arguments);
    } catch {
      throw validationError([{ path: `${path}.tool_calls[${i}].function.arguments`, message: 'Not valid JSON' }]);
    }
    return { id: call.id, name: call.function.name, arguments: parsed as Record<string, unknown> };
  });
  return {
    role: message.role === 'developer' ? 'system' : message.role,
    content: textOf(message.content, `${path}.content`),
    ...(toolCalls?.length && { tool_calls: toolCalls }),
    ...(message.tool_call_id !== undefined && { tool_call_id: message.tool_call_id }),
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

/** `response_format` in the native request's terms; `text` is no format. */
function responseFormatOf(format: OpenAiGenerationOptions['response_format']): ResponseFormat | undefined {
  if (!format || format.type === 'text') return undefined;
  if (format.type === 'json_object') return { type: 'json_object' };
  const { schema } = (format as Extract<NonNullable<typeof format>, { type: 'json_schema' }>).json_schema;
  return { type: 'json_schema', ...(schema !== undefined && { schema }) };
}

const OPENAI_PATHS = {
  schema: 'body.response_format.json_schema.schema',
  tools: 'body.tools',
  toolParameters: (i: number) => `body.tools[${i}].function.parameters`,
  toolChoice: 'body.tool_choice',
};

/** Writes one OpenAI server-sent event: unnamed, `data:` only. */
function sendData(_ctx: AppContext, stream: EventStream, data: unknown): void {
  stream.data(data);
}

type Usage = GenerationResult['usage'];

/**
 * A request's usage from its choices' results (in `index` order; a choice that made nothing may be
 * missing): each prompt counted once (its choices read the same tokens), every choice's completion.
 */
function sumUsage(results: readonly (GenerationResult | undefined)[], perPrompt: number): Usage {
  const prompts: number[] = [];
  let completion = 0;
  results.forEach((result, index) => {
    if (!result) return;
    prompts[Math.floor(index / perPrompt)] ??= result.usage.prompt_tokens;
    completion += result.usage.completion_tokens;
  });
  const prompt = prompts.reduce((sum, tokens) => sum + tokens, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** What a completion route needs to know to answer, whether plainly or as a stream. */
interface Completion<Answer, Chunk> {
  /** One generation per choice, in `index` order. */
  choices: GenerationRequest[];
  /** Choices per prompt (`n`), for counting prompt tokens once. */
  perPrompt: number;
  stream: boolean;
  includeUsage: boolean;
  answer(results: GenerationResult[], usage: Usage): Answer;
  /** A stream's chunks before a choice's first text (role, echoed prompt, a call's header). */
  startChunks(index: number): Chunk[];
  textChunk(index: number, text: string): Chunk | undefined;
  /** A stream's chunks after a choice's last text: calls made, and its `finish_reason`. */
  endChunks(index: number, result: GenerationResult): Chunk[];
  /** The chunk after the last with `include_usage`: no choices, only the usage. */
  usageChunk(usage: Usage): Chunk;
}

const withSeed = (generation: GenerationRequest, offset: number): GenerationRequest =>
  offset === 0 || generation.seed === undefined ? { ...generation } : { ...generation, seed: (generation.seed + offset) % 2 ** 32 };

export function openAIRoutes(deps: RouteDeps, catalog: ModelCatalog, engine: InferenceEngine): Router<AppState> {
  const { config, store } = deps;
  const router = createRouter();
  const body = jsonBody(() => config.limits.max_body_bytes);
  const can = (permission: Parameters<typeof requirePermission>[1]) => [requireAuth, requirePermission(store, permission)];
  const parallel = () => config.engine.parallel;

  const engineFailure = (error: unknown, model: string) => {
    // `reserveForStream` has already turned an unknown model into a native 404.
    if (error instanceof ModelNotFoundError || (error instanceof ApiError && error.code === 'NOT_FOUND')) return modelNotFound(model);
    if (error instanceof ModelUnusableError) return new OpenAIApiError('CONFLICT', error.message, { param: 'model', code: 'model_invalid' });
    return engineError(error, parallel());
  };

  /** Streaming needs `use_streaming` on top of the route's permission, as in the native API. */
  const streamingNeedsPermission: AppMiddleware = async (ctx, next) => {
    const { stream } = ctx.state.input.body as { stream?: boolean | null };
    if (stream) return requirePermission(store, 'use_streaming')(ctx, next);
    return next();
  };

  /** OpenAI's deprecated function-calling fields: refused rather than silently dropped. */
  const refuseLegacyFunctions: AppMiddleware = async (ctx, next) => {
    const raw = ctx.state.input.body as Record<string, unknown> | undefined;
    for (const field of ['functions', 'function_call']) {
      if (raw && typeof raw === 'object' && field in raw && raw[field] !== null) {
        throw validationError([{ path: `body.${field}`, message: `${field} is deprecated and not supported: use tools and tool_choice` }]);
      }
    }
    return next();
  };

  const checkChoices = (count: number, param: string) => {
    const limit = config.limits.max_choices;
    if (count > limit) throw validationError([{ path: `body.${param}`, message: `${count} choices asked for; the limit is ${limit} ([limits] max_choices)` }]);
  };

  async function complete<Answer, Chunk>(ctx: AppContext, completion: Completion<Answer, Chunk>) {
    const [first] = completion.choices;
    const model = first!.model;
    const signal = clientGone(ctx);
    try {
      // The choices of one prompt differ only in their seed: checking one of them is enough.
      for (let i = 0; i < completion.choices.length; i += completion.perPrompt) await engine.checkPrompt(completion.choices[i]!);
    } catch (error) {
      throw engineFailure(error, model);
    }
    // One choice failing stops the others: the request fails as a whole.
    const failed = new AbortController();
    const choiceSignal = AbortSignal.any([signal, failed.signal]);
    if (!completion.stream) {
      let results: GenerationResult[];
      try {
        results = await Promise.all(
          completion.choices.map((choice) =>
            engine.generate(choice, { signal: choiceSignal }).catch((error: unknown) => {
              failed.abort();
              throw error;
            }),
          ),
        );
      } catch (error) {
        throw engineFailure(error, model);
      }
      const usage = sumUsage(results, completion.perPrompt);
      deps.telemetry.generations(ctx, model, results, usage);
      ctx.body = completion.answer(results, usage);
      return;
    }

    let opened;
    try {
      opened = await reserveForStream(ctx, engine, model, signal, parallel());
    } catch (error) {
      throw engineFailure(error, model);
    }
    const { stream } = opened;
    // With `include_usage`, OpenAI marks every chunk but the last with `usage: null`.
    const send = (chunk: Chunk | undefined) => chunk && sendData(ctx, stream, completion.includeUsage ? { ...chunk, usage: null } : chunk);
    const run = async (index: number, reservation: Reservation) => {
      try {
        for (const chunk of completion.startChunks(index)) send(chunk);
        const result = await reservation.generate(completion.choices[index]!, { signal: choiceSignal, onText: (text) => text && send(completion.textChunk(index, text)) });
        for (const chunk of completion.endChunks(index, result)) send(chunk);
        return result;
      } finally {
        reservation.release();
      }
    };
    // Every choice ends before the stream does (one failing stops the others at their next token),
    // so no chunk follows the error, and what each made is known.
    const results: (GenerationResult | undefined)[] = [];
    let failure: { error: unknown } | undefined;
    try {
      await Promise.all(
        completion.choices.map(async (_, index) => {
          try {
            const reservation = index === 0 ? opened.reservation : await engine.reserve(model, choiceSignal);
            // Another choice failed while this one waited for its place (a place handed over to it
            // as the failed one released it): it makes nothing, and reads nothing to count.
            if (failed.signal.aborted) return reservation.release();
            results[index] = await run(index, reservation);
          } catch (error) {
            // Cut short by an unload or the shutdown: the tokens it sent are still usage.
            results[index] = partialOf(error);
            failure ??= { error };
            failed.abort();
          }
        }),
      );
      const usage = sumUsage(results, completion.perPrompt);
      if (failure) {
        deps.telemetry.streamFailed(ctx, model, { results: results.filter((result) => result !== undefined), usage });
        sendData(ctx, stream, streamFailure(ctx, failure.error, parallel(), deps.logger));
      } else {
        deps.telemetry.generations(ctx, model, results as GenerationResult[], usage);
        if (completion.includeUsage) sendData(ctx, stream, completion.usageChunk(usage));
      }
      // A failed stream still ends the way OpenAI clients wait for.
      sendData(ctx, stream, '[DONE]');
    } finally {
      stream.end();
    }
  }

  router.get('/models', ...can('read_models'), async (ctx) => {
    // OpenAI clients pick models from this list: only those that can be used.
    ctx.body = { object: 'list', data: (await catalog.list()).filter((model) => model.state === 'available').map(toOpenAIModel) };
  });

  router.get('/models/:model', ...can('read_models'), validate({ params: zOpenaiRetrieveModelPath }), async (ctx) => {
    const { model: id } = ctx.state.input.params as { model: string };
    const model = await catalog.get(id);
    if (!model) throw modelNotFound(id);
    ctx.body = toOpenAIModel(model);
  });

  router.post('/chat/completions', ...can('run_inference'), body, refuseLegacyFunctions, parseBody(zOpenaiCreateChatCompletionBody), streamingNeedsPermission, async (ctx) => {
    const request = ctx.state.input.body as OpenAiChatCompletionRequest;
    const n = request.n ?? 1;
    checkChoices(n, 'n');
    const toolChoice = request.tool_choice;
    const generation = toGenerationRequest(
      {
        model: request.model,
        messages: request.messages.map(toNativeMessage),
        ...samplingOf(request),
        response_format: responseFormatOf(request.response_format),
        ...(request.tools && { tools: request.tools.map((tool) => ({ name: tool.function.name, description: tool.function.description, parameters: tool.function.parameters })) }),
        ...(toolChoice && { tool_choice: typeof toolChoice === 'string' ? toolChoice : { name: toolChoice.function.name } }),
        ...(typeof request.parallel_tool_calls === 'boolean' && { parallel_tool_calls: request.parallel_tool_calls }),
      },
      config.limits,
      OPENAI_PATHS,
    );
    const plan = generation.toolPlan;
    const id = newId('chatcmpl');
    const created = now();
    type Choice = OpenAiChatCompletionChunk['choices'][number];
    const chunk = (choice: Choice): OpenAiChatCompletionChunk => ({ id, object: 'chat.completion.chunk', created, model: request.model, choices: [choice] });
    const delta = (index: number, value: Choice['delta'], finishReason: OpenAiFinishReason | null = null) => chunk({ index, delta: value, finish_reason: finishReason, logprobs: null });
    const asOpenAI = (call: ToolCallOut) => ({ id: call.id, type: 'function' as const, function: { name: call.name, arguments: JSON.stringify(call.arguments) } });

    /** A choice's message: its text, or its tool calls (a forced call cut off keeps its partial arguments). */
    const messageOf = (result: GenerationResult): { message: OpenAiChatCompletion['choices'][number]['message']; finish: OpenAiFinishReason } => {
      const calls = readToolCalls(plan, result);
      if (calls) {
        const content = plan?.mode === 'auto' && result.text ? result.text : null;
        return { message: { role: 'assistant', content, refusal: null, tool_calls: calls.map(asOpenAI) }, finish: 'tool_calls' };
      }
      if (plan?.mode === 'single' && result.finishReason === 'length') {
        const call = { id: newToolCallId(), type: 'function' as const, function: { name: plan.name, arguments: result.text } };
        return { message: { role: 'assistant', content: null, refusal: null, tool_calls: [call] }, finish: 'length' };
      }
      return { message: { role: 'assistant', content: result.text, refusal: null }, finish: toFinishReason(result.finishReason) };
    };

    // A single forced call streams its arguments as they are generated; a list of calls, or calls
    // the model chose (auto), come whole once the generation ends.
    await complete<OpenAiChatCompletion, OpenAiChatCompletionChunk>(ctx, {
      choices: Array.from({ length: n }, (_, i) => withSeed(generation, i)),
      perPrompt: n,
      stream: request.stream === true,
      includeUsage: request.stream_options?.include_usage === true,
      answer: (results, usage) => ({
        id,
        object: 'chat.completion',
        created,
        model: request.model,
        choices: results.map((result, index) => {
          const { message, finish } = messageOf(result);
          return { index, message, finish_reason: finish, logprobs: null };
        }),
        usage,
      }),
      startChunks: (index) => {
        if (plan?.mode !== 'single') return [delta(index, { role: 'assistant', content: '' })];
        return [delta(index, { role: 'assistant', content: null, tool_calls: [{ index: 0, id: newToolCallId(), type: 'function', function: { name: plan.name, arguments: '' } }] })];
      },
      textChunk: (index, text) => {
        if (plan?.mode === 'single') return delta(index, { tool_calls: [{ index: 0, function: { arguments: text } }] });
        if (plan?.mode === 'list') return undefined;
        return delta(index, { content: text });
      },
      endChunks: (index, result) => {
        if (plan?.mode === 'single') return [delta(index, {}, result.finishReason === 'length' ? 'length' : readToolCalls(plan, result) ? 'tool_calls' : toFinishReason(result.finishReason))];
        const calls = readToolCalls(plan, result);
        if (!calls) {
          // A list of calls cut off: what was generated, as text.
          const partial = plan?.mode === 'list' && result.text ? [delta(index, { content: result.text })] : [];
          return [...partial, delta(index, {}, toFinishReason(result.finishReason))];
        }
        return [
          delta(index, { tool_calls: calls.map((call, k) => ({ index: k, ...asOpenAI(call) })) }),
          delta(index, {}, 'tool_calls'),
        ];
      },
      usageChunk: (usage) => ({ id, object: 'chat.completion.chunk', created, model: request.model, choices: [], usage }),
    });
  });

  router.post('/completions', ...can('run_inference'), body, parseBody(zOpenaiCreateCompletionBody), streamingNeedsPermission, async (ctx) => {
    const request = ctx.state.input.body as OpenAiCompletionRequest;
    const prompts = typeof request.prompt === 'string' ? [request.prompt] : request.prompt;
    const n = request.n ?? 1;
    checkChoices(prompts.length * n, typeof request.prompt === 'string' ? 'n' : 'prompt');
    const generations = prompts.map((prompt, p) => {
      try {
        return toGenerationRequest({ model: request.model, prompt, ...samplingOf(request), response_format: responseFormatOf(request.response_format) }, config.limits, OPENAI_PATHS);
      } catch (error) {
        // A list's prompt that is too long is named by its index.
        if (typeof request.prompt !== 'string' && error instanceof ApiError && Array.isArray(error.details)) {
          throw validationError(error.details.map((issue) => ({ ...issue, path: issue.path.replace(/^body\.prompt$/, `body.prompt[${p}]`) })), error.message);
        }
        throw error;
      }
    });
    const id = newId('cmpl');
    const created = now();
    const echoOf = (index: number) => (request.echo === true ? prompts[Math.floor(index / n)]! : '');
    const chunk = (index: number, text: string, finishReason: OpenAiFinishReason | null): OpenAiCompletion => ({
      id,
      object: 'text_completion',
      created,
      model: request.model,
      choices: [{ index, text, finish_reason: finishReason, logprobs: null }],
    });
    await complete<OpenAiCompletion, OpenAiCompletion>(ctx, {
      choices: generations.flatMap((generation) => Array.from({ length: n }, (_, i) => withSeed(generation, i))),
      perPrompt: n,
      stream: request.stream === true,
      includeUsage: request.stream_options?.include_usage === true,
      answer: (results, usage) => ({
        id,
        object: 'text_completion',
        created,
        model: request.model,
        choices: results.map((result, index) => ({ index, text: echoOf(index) + result.text, finish_reason: toFinishReason(result.finishReason), logprobs: null })),
        usage,
      }),
      startChunks: (index) => (echoOf(index) ? [chunk(index, echoOf(index), null)] : []),
      textChunk: (index, text) => chunk(index, text, null),
      endChunks: (index, result) => [chunk(index, '', toFinishReason(result.finishReason))],
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
      throw engineFailure(embeddingInputError(error, request.input), request.model);
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
