import {
  SpecialToken,
  SpecialTokensText,
  type ChatHistoryItem,
  type ChatModelFunctionCall,
  type ChatModelFunctions,
  type ChatWrapper,
  type LlamaModel,
  type LlamaText,
  type Token,
} from 'node-llama-cpp';
import type { GenerationRequest } from './engine.js';

/**
 * A chat request's prompt: the chat template rendered with the request's history (and the
 * functions it describes), as node-llama-cpp's LlamaChat renders it, and whether the engine's own
 * decode loop can generate the answer in LlamaChat's place.
 *
 * LlamaChat's generation loop costs its JS per token and a sampling call of its own after every
 * decode, and cannot use the engine's runs (decode-loop.ts): a chat streamed a quarter of a plain
 * completion's tokens a second on the tiny model. Most chats need nothing of that loop beyond its
 * template and its stop triggers: no function calling, no thought segments, no text the template
 * says to strip from the answer's start, no prefix triggers. Those are generated as completions of
 * the rendered prompt, stopping where LlamaChat stops (its stop triggers: texts, or special tokens
 * such as a turn's end); the others keep LlamaChat.
 */
export interface RenderedChat {
  /** The prompt's tokens (the template's special tokens included). */
  tokens: Token[];
  /** Set where the engine's loop can generate the answer: where it stops, besides an end-of-generation token and the request's own stops. */
  plain?: { stops: string[]; stopTokens: Token[][] };
}

let plainChats = true;

/** Whether chats that allow it are generated on the engine's own loop (default yes): for tests and benchmarks that compare with LlamaChat. */
export function usePlainChats(on: boolean): void {
  plainChats = on;
}

// checkPrompt and the generation both need a chat's rendering: worked out once per request and wrapper.
const rendered = new WeakMap<GenerationRequest, { wrapper: ChatWrapper; chat: RenderedChat }>();

export function renderChat(model: LlamaModel, request: GenerationRequest, wrapper: ChatWrapper): RenderedChat {
  const known = rendered.get(request);
  if (known?.wrapper === wrapper) return known.chat;
  // The functions described as LlamaChat describes them (its `functions` are the template's `availableFunctions`).
  const { functions: availableFunctions, documentFunctionParams } = autoFunctions(request);
  const state = wrapper.generateContextState({ chatHistory: toChatHistory(request, wrapper), availableFunctions, documentFunctionParams });
  const chat: RenderedChat = { tokens: state.contextText.tokenize(model.tokenizer) };
  const segments = wrapper.settings.segments;
  const simple =
    plainChats &&
    availableFunctions === undefined &&
    segments?.thought === undefined &&
    segments?.comment === undefined &&
    state.prefixTriggers === undefined &&
    state.noPrefixTrigger === undefined &&
    state.rerender === undefined &&
    !state.ignoreStartText?.length &&
    state.functionCall?.initiallyEngaged !== true;
  if (simple) chat.plain = stopsOf(model, state.stopGenerationTriggers);
  rendered.set(request, { wrapper, chat });
  return chat;
}

/**
 * The template's stop triggers as texts and token sequences, each resolved as LlamaChat's stop
 * detector resolves it (a special token by its id, special-token text by its special tokens' ids
 * and the text between them); undefined when one mixes text and tokens (LlamaChat then generates).
 */
function stopsOf(model: LlamaModel, triggers: readonly LlamaText[]): RenderedChat['plain'] {
  const stops: string[] = [];
  const stopTokens: Token[][] = [];
  for (const trigger of triggers) {
    const items = trigger.values.flatMap((value): (string | Token)[] => {
      if (typeof value === 'string') return value === '' ? [] : [value];
      if (value instanceof SpecialToken) return value.tokenize(model.tokenizer);
      if (value instanceof SpecialTokensText) return value.tokenizeSpecialTokensOnly(model.tokenizer);
      return [];
    });
    if (items.length === 0) continue;
    if (items.every((item) => typeof item === 'string')) stops.push(items.join(''));
    else if (items.every((item) => typeof item === 'number')) stopTokens.push(items as Token[]);
    else return undefined;
  }
  return { stops, stopTokens };
}

/** The `functions` options of a generation in `auto` mode (LlamaChat then describes them itself). */
export function autoFunctions(request: GenerationRequest): { functions?: ChatModelFunctions; documentFunctionParams?: boolean; maxParallelFunctionCalls?: number } {
  if (request.functions?.mode !== 'auto') return {};
  return { functions: request.functions.available as ChatModelFunctions, documentFunctionParams: true, maxParallelFunctionCalls: request.functions.maxParallel };
}

/**
 * The messages as node-llama-cpp's chat history. A model turn holds its function calls with their
 * results (the `tool` messages that follow), and what the assistant said after them, so the chat
 * template renders a whole call → result → answer exchange.
 */
export function toChatHistory(request: GenerationRequest, wrapper: ChatWrapper | undefined): ChatHistoryItem[] {
  let history: ChatHistoryItem[] = [];
  const calls = new Map<string, ChatModelFunctionCall>();
  for (const message of request.messages ?? []) {
    const last = history.at(-1);
    if (message.role === 'tool') {
      const call = message.toolCallId === undefined ? undefined : calls.get(message.toolCallId);
      if (call) call.result = parseResult(message.content);
      continue;
    }
    if (message.role === 'assistant') {
      const response: ChatModelFunctionCall['result'][] = [];
      if (message.content) response.push(message.content);
      for (const toolCall of message.toolCalls ?? []) {
        const call: ChatModelFunctionCall = { type: 'functionCall', name: toolCall.name, params: toolCall.arguments, result: undefined };
        calls.set(toolCall.id, call);
        response.push(call);
      }
      // An answer after tool results continues the model turn that made the calls.
      if (last?.type === 'model' && endsWithCall(last)) last.response.push(...response);
      else history.push({ type: 'model', response });
      continue;
    }
    history.push({ type: message.role, text: message.content });
  }
  if (request.functions?.mode === 'describe' && wrapper) {
    history = [...wrapper.addAvailableFunctionsSystemMessageToHistory(history, request.functions.available as ChatModelFunctions, { documentParams: true })];
  }
  // The model answers after the last message: an empty model turn is where its reply goes, or the
  // turn that ends with function results, which the model continues.
  const last = history.at(-1);
  if (!(last?.type === 'model' && endsWithCall(last))) history.push({ type: 'model', response: [] });
  return history;
}

const endsWithCall = (item: ChatHistoryItem & { type: 'model' }) => {
  const last = item.response.at(-1);
  return typeof last === 'object' && last.type === 'functionCall';
};

/** A tool's result: its JSON when the content is JSON, else the text. */
function parseResult(content: string): unknown {
  try {
    return JSON.parse(content);
  } catch {
    return content;
  }
}
