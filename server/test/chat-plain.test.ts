// Chats generated on the engine's own decode loop (chat.ts `renderChat`, completion.ts with the
// template's stops) give what node-llama-cpp's LlamaChat gives, on every chat template that allows
// it; the others (thought segments, function calling) keep LlamaChat.
import {
  AlpacaChatWrapper,
  ChatMLChatWrapper,
  DeepSeekChatWrapper,
  FalconChatWrapper,
  FunctionaryChatWrapper,
  GemmaChatWrapper,
  GeneralChatWrapper,
  HarmonyChatWrapper,
  LlamaChat,
  Llama2ChatWrapper,
  Llama3_1ChatWrapper,
  MistralChatWrapper,
  QwenChatWrapper,
  type ChatWrapper,
  type LlamaGrammar,
  type Token,
} from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DEFAULT_CONFIG } from '../../server/src/config.js';
import { renderChat, toChatHistory, usePlainChats } from '../../server/src/engine/chat.js';
import { complete } from '../../server/src/engine/completion.js';
import { openSequences, type EngineSequence } from '../../server/src/engine/contexts.js';
import { createSampler } from '../../server/src/engine/decode-loop.js';
import type { GenerationRequest } from '../../server/src/engine/engine.js';
import { engineOn, useTinyModel } from '../../test/helpers/demo-llama.js';

const MESSAGES: GenerationRequest['messages'] = [
  { role: 'system', content: 'You answer briefly.' },
  { role: 'user', content: 'Tell me a story' },
  { role: 'assistant', content: 'Once upon a time' },
  { role: 'user', content: 'Go on' },
];

interface Options {
  maxTokens: number;
  temperature?: number;
  seed?: number;
  topK?: number;
  topP?: number;
  stop?: string[];
  grammar?: LlamaGrammar;
}

/** LlamaChat's answer, as the engine asked for it before chats ran on its own loop. */
async function reference(item: EngineSequence, wrapper: ChatWrapper, options: Options) {
  await item.sequence.clearHistory();
  const chunks: string[] = [];
  const chat = new LlamaChat({ contextSequence: item.sequence, autoDisposeSequence: false, chatWrapper: wrapper });
  try {
    const { stop, ...rest } = options;
    const response = await chat.generateResponse(toChatHistory({ model: 'tiny', maxTokens: options.maxTokens, messages: MESSAGES }, wrapper), {
      ...rest,
      customStopTriggers: stop,
      onTextChunk: (text) => chunks.push(text),
    });
    const reason = response.metadata.stopReason;
    return { text: response.response, chunks, reason: reason === 'maxTokens' ? 'maxTokens' : 'stop' };
  } finally {
    chat.dispose({ disposeSequence: false });
  }
}

async function ours(item: EngineSequence, wrapper: ChatWrapper, options: Options) {
  await item.sequence.clearHistory();
  const rendered = renderChat(item.sequence.model, { model: 'tiny', maxTokens: options.maxTokens, messages: MESSAGES }, wrapper);
  if (!rendered.plain) throw new Error(`${wrapper.wrapperName} does not render a plain chat`);
  const chunks: string[] = [];
  const outcome = await complete(item.loop, item.sequence, {
    ...options,
    prompt: rendered.tokens,
    stop: [...rendered.plain.stops, ...(options.stop ?? [])],
    stopTokens: rendered.plain.stopTokens,
    incompleteEnd: 'drop',
    onText: (text) => chunks.push(text),
  });
  return { text: outcome.text, chunks, reason: outcome.stopReason === 'maxTokens' ? 'maxTokens' : 'stop', outcome, promptTokens: rendered.tokens.length };
}

describe('chats on the engine loop', () => {
  const tiny = useTinyModel();
  let item: EngineSequence;
  let close: () => Promise<void>;
  beforeAll(async () => {
    const { contexts, sequences } = await openSequences(tiny.model, { ...DEFAULT_CONFIG.engine, parallel: 1 });
    item = sequences[0]!;
    close = async () => {
      for (const context of contexts) await context.dispose();
    };
  });
  afterAll(async () => close?.());

  const wrappers = () => [
    new ChatMLChatWrapper(),
    new Llama3_1ChatWrapper(),
    new Llama2ChatWrapper(),
    new MistralChatWrapper(),
    new GemmaChatWrapper(),
    new GeneralChatWrapper(),
    new AlpacaChatWrapper(),
    new FalconChatWrapper(),
    new FunctionaryChatWrapper(),
  ];

  it('answers as LlamaChat does on every template without segments: greedy, seeded, stopped by a text, cut by max tokens', async () => {
    for (const wrapper of wrappers()) {
      const greedy = await ours(item, wrapper, { maxTokens: 40 });
      const expected = await reference(item, wrapper, { maxTokens: 40 });
      expect([wrapper.wrapperName, greedy.text, greedy.reason]).toEqual([wrapper.wrapperName, expected.text, expected.reason]);
      expect(greedy.chunks.join('')).toBe(greedy.text);
      // A stop text taken from the middle of the greedy answer: both end before it.
      const stop = greedy.text.slice(12, 15);
      const cases: Options[] = [
        { maxTokens: 64, temperature: 0.9, seed: 11 },
        { maxTokens: 64, temperature: 1.2, seed: 3, topK: 5, topP: 0.8 },
        { maxTokens: 40, stop: [stop] },
        { maxTokens: 1 },
      ];
      for (const options of cases) {
        const got = await ours(item, wrapper, options);
        const want = await reference(item, wrapper, options);
        expect([wrapper.wrapperName, options, got.text, got.reason]).toEqual([wrapper.wrapperName, options, want.text, want.reason]);
        expect(got.chunks.join('')).toBe(got.text);
      }
      expect(stop.length).toBe(3);
      const stopped = await ours(item, wrapper, { maxTokens: 40, stop: [stop] });
      expect(stopped.text).toBe(greedy.text.slice(0, greedy.text.indexOf(stop)));
    }
  });

  it('ends at a sampled end-of-turn token as LlamaChat does (the demo vocabulary ends turns often when sampling)', async () => {
    const wrapper = new ChatMLChatWrapper();
    let ended = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const options = { maxTokens: 120, temperature: 1, seed };
      const got = await ours(item, wrapper, options);
      expect(got.text).toBe((await reference(item, wrapper, options)).text);
      if (got.outcome.stopReason === 'eog') ended++;
    }
    expect(ended).toBeGreaterThan(3);
  });

  it('a template stop token ends the answer before it, the text before it kept whole; the answer decodes in runs', async () => {
    const wrapper = new ChatMLChatWrapper();
    const rendered = renderChat(item.sequence.model, { model: 'tiny', maxTokens: 30, messages: MESSAGES }, wrapper);
    await item.sequence.clearHistory();
    const tokens: Token[] = [];
    const sampler = createSampler(item.sequence.model, { temperature: 0, topK: 40, topP: 0.95, minP: 0, seed: 1 });
    try {
      await item.loop.run(item.sequence, rendered.tokens, sampler, (token) => tokens.push(token) < 30);
    } finally {
      sampler.dispose();
    }
    // The token at index 10 of the greedy answer, as if the template's turn end: the answer ends
    // where it first appears.
    const first = tokens.indexOf(tokens[10]!);
    await item.sequence.clearHistory();
    const runsBefore = item.loop.aheadSteps;
    const cut = await complete(item.loop, item.sequence, { prompt: rendered.tokens, maxTokens: 30, stopTokens: [[9_999_999 as Token], [tokens[10]!]] });
    expect(cut.stopReason).toBe('stop');
    expect(cut.completionTokens).toBe(first);
    expect(cut.text).toBe(item.sequence.model.detokenize(tokens.slice(0, first)));
    expect(item.loop.aheadSteps - runsBefore).toBeGreaterThan(0);
    // A sequence of two: the answer ends after its first token (which is text here, unlike a
    // template's special tokens).
    await item.sequence.clearHistory();
    const pair = await complete(item.loop, item.sequence, { prompt: rendered.tokens, maxTokens: 30, stopTokens: [[tokens[3]!, tokens[4]!]] });
    const at = tokens.findIndex((token, i) => token === tokens[3] && tokens[i + 1] === tokens[4]);
    expect(pair.completionTokens).toBe(at + 1);
  });

  it('keeps LlamaChat where the template has thought segments, and for function calling', () => {
    for (const wrapper of [new QwenChatWrapper(), new DeepSeekChatWrapper(), new HarmonyChatWrapper()]) {
      expect([wrapper.wrapperName, renderChat(tiny.model, { model: 'tiny', maxTokens: 8, messages: MESSAGES }, wrapper).plain]).toEqual([wrapper.wrapperName, undefined]);
    }
    const withTools: GenerationRequest = { model: 'tiny', maxTokens: 8, messages: MESSAGES, functions: { mode: 'auto', available: { lookup: { description: 'Looks up a word', params: { type: 'object', properties: { word: { type: 'string' } } } } } } };
    expect(renderChat(tiny.model, withTools, new ChatMLChatWrapper()).plain).toBeUndefined();
    // Described functions (a forced call: the grammar does the rest) render plain.
    expect(renderChat(tiny.model, { ...withTools, functions: { ...withTools.functions!, mode: 'describe' } }, new ChatMLChatWrapper()).plain).toBeDefined();
  });

  it('through the engine: the same text, usage and finish reason as LlamaChat, JSON schemas and streaming included', async () => {
    const engine = engineOn(tiny.dir, { parallel: 1 });
    await engine.start();
    try {
      const requests: GenerationRequest[] = [
        { model: 'tiny', messages: MESSAGES, maxTokens: 48, temperature: 0 },
        { model: 'tiny', messages: MESSAGES, maxTokens: 96, temperature: 1, seed: 4 },
        { model: 'tiny', messages: MESSAGES, maxTokens: 64, temperature: 0, stop: ['e'] },
        { model: 'tiny', messages: MESSAGES, maxTokens: 80, temperature: 0.8, seed: 2, jsonSchema: { type: 'object', properties: { word: { type: 'string', maxLength: 12 } }, required: ['word'] } },
      ];
      const results = [];
      const llamaChats = vi.spyOn(LlamaChat.prototype, 'generateResponse');
      const calls: number[] = [];
      for (const plain of [false, true]) {
        usePlainChats(plain);
        llamaChats.mockClear();
        for (const request of requests) {
          const streamed: string[] = [];
          const result = await engine.generate({ ...request }, { onText: (text) => streamed.push(text) });
          expect(streamed.join('')).toBe(result.text);
          results.push({ text: result.text, finishReason: result.finishReason, prompt: result.usage.prompt_tokens, completion: result.usage.completion_tokens });
        }
        calls.push(llamaChats.mock.calls.length);
      }
      llamaChats.mockRestore();
      expect(calls).toEqual([requests.length, 0]);
      usePlainChats(true);
      const [llamaChat, plain] = [results.slice(0, requests.length), results.slice(requests.length)];
      // Usage counts every token generated: LlamaChat leaves out the ones that made up a stop text
      // it held back (here the JSON grammar's closing newlines), as plain completions never did.
      expect(plain.map(({ completion, ...rest }) => rest)).toEqual(llamaChat.map(({ completion, ...rest }) => rest));
      expect(plain.slice(0, 3).map((r) => r.completion)).toEqual(llamaChat.slice(0, 3).map((r) => r.completion));
      expect(plain[3]!.completion).toBeGreaterThan(llamaChat[3]!.completion);
      expect(plain[0]!.completion).toBe(48);
      expect(plain[2]!.text).not.toContain('e');
      expect(JSON.parse(plain[3]!.text)).toEqual({ word: expect.any(String) });
    } finally {
      usePlainChats(true);
      await engine.close();
    }
  });
});
