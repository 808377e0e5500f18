// The decode loop at its edges, through the engine: prompts longer than a batch, contexts nearly
// full, chats and completions together on one context, aborts and unloads at every stage, stop
// sequences, a decode that fails, chat prompts and usage, tokenizer settings, several choices.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getLlama, LlamaLogLevel, type LlamaContext, type Token } from 'node-llama-cpp';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, type Config } from '../../server/src/config.js';
import { openSequences, type EngineSequence } from '../../server/src/engine/contexts.js';
import { complete } from '../../server/src/engine/completion.js';
import { createSampler } from '../../server/src/engine/decode-loop.js';
import { writeDemoModel } from '../../server/src/engine/demo-model.js';
import { InferenceEngine, ModelUnloadedError, PromptTooLongError, type GenerationRequest, type GenerationResult } from '../../server/src/engine/engine.js';
import { waitForReady } from '../../test/helpers/api-checks.js';
import { call, login, startTestServer } from '../../test/helpers/server.js';
import { countDecodeSteps } from '../../test/helpers/decode-steps.js';
import { scrape } from '../../test/helpers/prometheus.js';
import { createApiKey } from '../../test/helpers/security.js';
import { engineOn } from '../../test/helpers/demo-llama.js';

const LONG_PROMPT = 'The quick brown fox jumps over the lazy dog. '.repeat(20); // ~620 tokens

/**
 * An engine on `dir`'s models, one context of 4 sequences unless `engineConfig` says otherwise,
 * whose deterministic requests (all of these are greedy, to compare texts) batch with the others.
 */
const engineWith = (dir: string, engineConfig: Partial<Config['engine']>) => engineOn(dir, { parallel: 4, sequences_per_context: 4, isolate_deterministic: false, ...engineConfig });
/** A short plain prompt and a short chat, run before and after each disturbance: the same text means a fresh sequence. */
const PLAIN: GenerationRequest = { model: 'tiny', prompt: 'Hello world', maxTokens: 30, temperature: 0 };
const CHAT: GenerationRequest = { model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], maxTokens: 30, temperature: 0 };

describe('decode loop edges', () => {
  let dir: string;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-edges-'));
    await writeDemoModel(path.join(dir, 'tiny.gguf'), { preset: 'tiny' });
  });
  afterAll(() => {
    process.off('unhandledRejection', onUnhandled);
    expect(unhandled).toEqual([]);
  });

  for (const isolate of [false, true]) {
    it(`a prompt longer than a batch gives the text it gives alone, with others generating (deterministic requests ${isolate ? 'alone' : 'batched'})`, async () => {
      const engine = engineWith(dir, { batch_size: 64, context_size: 1024, isolate_deterministic: isolate });
      await engine.start();
      try {
        // A plain prompt, then a chat, with a long prompt.
        const requests: GenerationRequest[] = [
          { model: 'tiny', prompt: LONG_PROMPT, maxTokens: 24, temperature: 0 },
          { model: 'tiny', messages: [{ role: 'user', content: LONG_PROMPT }], maxTokens: 24, temperature: 0 },
        ];
        for (const request of requests) {
          const alone = await engine.generate(request);
          expect(alone.usage.prompt_tokens).toBeGreaterThan(200);
          const others = [1, 2, 3].map(() => engine.generate({ model: 'tiny', prompt: 'Hello world', maxTokens: 100, temperature: 0 }));
          await new Promise((resolve) => setTimeout(resolve, 5));
          const together = await engine.generate(request);
          await Promise.all(others);
          expect(together.text).toBe(alone.text);
          expect(together.usage).toEqual(alone.usage);
        }
      } finally {
        await engine.close();
      }
    });

    it(`prompts that nearly fill the context end at \`length\` on all sequences at once (deterministic requests ${isolate ? 'alone' : 'batched'})`, async () => {
      const engine = engineWith(dir, { batch_size: 64, context_size: 256, isolate_deterministic: isolate });
      await engine.start();
      try {
        const prompt = 'The quick brown fox jumps over the lazy dog. '.repeat(6); // ~190 tokens of 256
        const results = await Promise.all([
          ...[0, 1, 2].map(() => engine.generate({ model: 'tiny', prompt, maxTokens: 500, temperature: 0 })),
          engine.generate({ model: 'tiny', messages: [{ role: 'user', content: prompt }], maxTokens: 500, temperature: 0 }),
        ]);
        for (const result of results) {
          expect(result.finishReason).toBe('length');
          expect(result.usage.total_tokens).toBeLessThanOrEqual(256);
          expect(result.usage.total_tokens).toBeGreaterThan(240);
        }
      } finally {
        await engine.close();
      }
    });

  }

  it('chats (plain, tools in auto mode, a JSON schema) and completions on one context give what each gives alone, bar a rare batched near-tie', async () => {
    const engine = engineWith(dir, {});
    await engine.start();
    try {
      const requests: GenerationRequest[] = [
        { model: 'tiny', messages: [{ role: 'user', content: 'Tell me a story' }], maxTokens: 40, temperature: 0 },
        {
          model: 'tiny',
          messages: [{ role: 'user', content: 'What is the weather?' }],
          maxTokens: 40,
          temperature: 0,
          functions: { mode: 'auto', available: { weather: { description: 'The weather', params: { type: 'object', properties: { city: { type: 'string' } } } } } },
        },
        { model: 'tiny', messages: [{ role: 'user', content: 'JSON please' }], maxTokens: 40, temperature: 0, jsonSchema: { type: 'object', properties: { a: { type: 'boolean' } }, required: ['a'] } },
        { model: 'tiny', prompt: 'Hello world', maxTokens: 60, temperature: 0 },
        { model: 'tiny', prompt: 'Once upon a time', maxTokens: 60, temperature: 0 },
      ];
      const alone: GenerationResult[] = [];
      for (const request of requests) alone.push(await engine.generate(request));
      // Sequences side by side decode in one graph, whose numbers differ very slightly from a
      // token's alone (README, sequences_per_context), so a greedy near-tie can now and then pick
      // another token: each result keeps its prompt and its shape, and nearly all give alone's
      // text exactly. Crossed sequences (wrong cells, positions or logits) would change most.
      const compared: boolean[] = [];
      const check = (got: GenerationResult, index: number) => {
        const want = alone[index]!;
        expect(got.usage.prompt_tokens).toBe(want.usage.prompt_tokens);
        if (requests[index]!.jsonSchema) expect(JSON.parse(got.text)).toEqual({ a: expect.any(Boolean) });
        expect(got.functionCalls?.map((call) => call.name)).toEqual(want.functionCalls?.map((call) => call.name));
        compared.push(got.text === want.text && got.usage.completion_tokens === want.usage.completion_tokens);
      };
      for (const [a, b] of [[0, 3], [1, 3], [2, 3], [0, 4], [1, 2], [0, 1]] as const) {
        const [x, y] = await Promise.all([engine.generate(requests[a]!), engine.generate(requests[b]!)]);
        check(x, a);
        check(y, b);
      }
      const all = await Promise.all(requests.slice(0, 4).map((request) => engine.generate(request)));
      all.forEach((got, index) => check(got, index));
      expect(compared.filter((same) => !same).length, `${compared.filter((same) => !same).length} of ${compared.length} differ`).toBeLessThanOrEqual(2);
    } finally {
      await engine.close();
    }
  });

  it('an abort at any stage leaves the sequence as a fresh one', async () => {
    const engine = engineWith(dir, { batch_size: 32, parallel: 1, sequences_per_context: 1 });
    await engine.start();
    try {
      const plain = PLAIN;
      const chat = CHAT;
      const fresh = [await engine.generate(plain), await engine.generate(chat)];
      const long: GenerationRequest[] = [
        { model: 'tiny', prompt: LONG_PROMPT, maxTokens: 1000, temperature: 0 },
        { model: 'tiny', messages: [{ role: 'user', content: LONG_PROMPT }], maxTokens: 1000, temperature: 0 },
      ];
      for (const request of long) {
        for (const stage of ['before', 'prompt', 'first', 'mid'] as const) {
          const controller = new AbortController();
          if (stage === 'before') controller.abort();
          let texts = 0;
          const running = engine.generate(request, {
            signal: controller.signal,
            onText: () => {
              texts++;
              if (stage === 'first' || (stage === 'mid' && texts === 5)) controller.abort();
            },
          });
          if (stage === 'prompt') setImmediate(() => controller.abort());
          const outcome = await running.then(
            (result) => result.finishReason,
            (error: unknown) => (error as Error).name,
          );
          expect(['cancelled', 'AbortError']).toContain(outcome);
          expect([(await engine.generate(plain)).text, (await engine.generate(chat)).text]).toEqual([fresh[0]!.text, fresh[1]!.text]);
        }
      }
    } finally {
      await engine.close();
    }
  });

  it('an abort while a long prompt decodes ends it at the next step, not after the whole prompt', async () => {
    const engine = engineWith(dir, { batch_size: 32, parallel: 1, sequences_per_context: 1 });
    await engine.start();
    try {
      const [context] = (await engine.load('tiny')).contexts;
      const fresh = [await engine.generate(PLAIN), await engine.generate(CHAT)];
      const steps = countDecodeSteps(context!);
      for (const request of [
        { model: 'tiny', prompt: LONG_PROMPT, maxTokens: 10, temperature: 0 },
        { model: 'tiny', messages: [{ role: 'user' as const, content: LONG_PROMPT }], maxTokens: 10, temperature: 0 },
      ]) {
        steps.length = 0;
        const abort = new AbortController();
        const running = engine.generate(request, { signal: abort.signal }).then((result) => result.finishReason, (error: unknown) => (error as Error).name);
        while (steps.length === 0) await new Promise((resolve) => setImmediate(resolve));
        abort.abort();
        expect(['cancelled', 'AbortError']).toContain(await running);
        // Of ~20 chunks; a chat's prompt too (node-llama-cpp hands it over as one decode).
        expect(steps.length).toBeLessThanOrEqual(2);
        // The chunks it did decode are gone from the sequence: the next requests find it fresh.
        expect([(await engine.generate(PLAIN)).text, (await engine.generate(CHAT)).text]).toEqual([fresh[0]!.text, fresh[1]!.text]);
      }
    } finally {
      await engine.close();
    }
  });

  for (const stop of ['unload', 'stopGenerations'] as const) {
    it(`${stop} during a step ends the chat and the completion sharing it; the model serves again`, async () => {
      const engine = engineWith(dir, {});
      await engine.start();
      try {
        const plain = PLAIN;
        const chat = CHAT;
        const fresh = [await engine.generate(plain), await engine.generate(chat)];
        let started = 0;
        const onText = () => void started++;
        const running = [
          engine.generate({ ...plain, maxTokens: 1500 }, { onText }),
          engine.generate({ ...chat, maxTokens: 1500 }, { onText }),
          engine.generate({ ...plain, prompt: LONG_PROMPT, maxTokens: 1500 }, { onText }),
          engine.generate({ ...chat, messages: [{ role: 'user', content: LONG_PROMPT }], maxTokens: 1500 }, { onText }),
        ].map((generation) => generation.then(() => 'resolved', (error: unknown) => error));
        while (started < 20) await new Promise((resolve) => setTimeout(resolve, 1));
        if (stop === 'unload') await engine.unload('tiny');
        else engine.stopGenerations(new ModelUnloadedError('shutting down'));
        for (const outcome of await Promise.all(running)) expect(outcome).toBeInstanceOf(ModelUnloadedError);
        if (stop === 'stopGenerations') await engine.unload('tiny');
        expect([(await engine.generate(plain)).text, (await engine.generate(chat)).text]).toEqual([fresh[0]!.text, fresh[1]!.text]);
      } finally {
        await engine.close();
      }
    });
  }

  it('a failed decode rejects the generations in its step; the sequences serve the next requests as fresh ones', async () => {
    const engine = engineWith(dir, { batch_size: 32, parallel: 1, sequences_per_context: 1 });
    await engine.start();
    try {
      const plain = PLAIN;
      const chat = CHAT;
      const fresh = [await engine.generate(plain), await engine.generate(chat)];
      const [context] = (await engine.load('tiny')).contexts;
      const failing = failDecode(context!);
      for (const request of [chat, plain]) {
        for (const at of [1, 2, 12]) {
          failing.at = at; // the first prompt chunk, the second, a generated token
          const long = request.messages ? { ...request, messages: [{ role: 'user' as const, content: LONG_PROMPT }] } : { ...request, prompt: LONG_PROMPT };
          await expect(engine.generate(long)).rejects.toThrow('could not find a KV slot');
          expect([(await engine.generate(plain)).text, (await engine.generate(chat)).text]).toEqual([fresh[0]!.text, fresh[1]!.text]);
        }
      }
    } finally {
      await engine.close();
    }
  });

  it('a failed step of several sequences rejects each of them; the next ones on the context are fresh', async () => {
    const engine = engineWith(dir, {});
    await engine.start();
    try {
      const requests: GenerationRequest[] = [
        { model: 'tiny', prompt: 'Hello world', maxTokens: 40, temperature: 0 },
        { model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], maxTokens: 40, temperature: 0 },
        { model: 'tiny', prompt: 'Once upon a time', maxTokens: 40, temperature: 0 },
        { model: 'tiny', messages: [{ role: 'user', content: 'Tell me a story' }], maxTokens: 40, temperature: 0 },
      ];
      // Each alone, before and after (beside others a token's numbers differ very slightly).
      const alone = async () => {
        const texts: string[] = [];
        for (const request of requests) texts.push((await engine.generate(request)).text);
        return texts;
      };
      const fresh = await alone();
      const [context] = (await engine.load('tiny')).contexts;
      failDecode(context!).at = 12; // after the 4 prompts, a step of all 4
      const failed = await Promise.all(requests.map((request) => engine.generate(request).then(() => 'resolved', (error: unknown) => (error as Error).message)));
      expect(failed.filter((outcome) => outcome.includes('could not find a KV slot')).length).toBeGreaterThan(1);
      expect(await alone()).toEqual(fresh);
    } finally {
      await engine.close();
    }
  });
});

describe('chat prompts and usage', () => {
  let engine: InferenceEngine;
  beforeAll(async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-chat-usage-'));
    await writeDemoModel(path.join(dir, 'tiny.gguf'), { preset: 'tiny' });
    engine = engineWith(dir, { context_size: 1024 });
    await engine.start();
  });
  afterAll(() => engine.close());

  it('counts the description of functions (tools, auto) in the prompt: the context fills to `length`, a prompt too long is refused', async () => {
    const functions = { mode: 'auto' as const, available: { weather: { description: 'The weather in a city', params: { type: 'object' as const, properties: { city: { type: 'string' as const } } } } } };
    const short: GenerationRequest = { model: 'tiny', messages: [{ role: 'user', content: 'Weather?' }], maxTokens: 900, temperature: 0, functions };
    await engine.checkPrompt(short);
    const answer = await engine.generate(short);
    expect(answer.finishReason).toBe('length');
    expect(answer.usage.total_tokens).toBe(1024);
    const plain = await engine.generate({ ...short, functions: undefined, maxTokens: 10 });
    expect(answer.usage.prompt_tokens).toBeGreaterThan(plain.usage.prompt_tokens + 100); // the functions' description
    const long: GenerationRequest = { ...short, messages: [{ role: 'user', content: 'The quick brown fox jumps over the lazy dog. '.repeat(14) }] };
    await expect(engine.checkPrompt(long)).rejects.toBeInstanceOf(PromptTooLongError);
    await expect(engine.generate(long)).rejects.toBeInstanceOf(PromptTooLongError);
  });

  it('counts a chat prompt once, whatever the tokens held back for a stop text', async () => {
    const chat: GenerationRequest = { model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], maxTokens: 30, temperature: 0 };
    const free = await engine.generate(chat);
    expect(free.finishReason).toBe('length');
    // Stops that match the start of the answer for a few tokens, then never / at once.
    for (const stop of [free.text.slice(0, 12) + '\u0001', free.text.slice(0, 6)]) {
      const stopped = await engine.generate({ ...chat, stop: [stop] });
      expect(stopped.usage.prompt_tokens).toBe(free.usage.prompt_tokens);
      expect(stopped.usage.total_tokens).toBe(stopped.usage.prompt_tokens + stopped.usage.completion_tokens);
      expect(stopped.usage.completion_tokens).toBeLessThanOrEqual(free.usage.completion_tokens);
    }
  });
});

/** The demo model with one of its boolean tokenizer settings flipped (a GGUF bool: type 7, then its byte). */
async function demoModelWith(file: string, setting: string, value: boolean): Promise<void> {
  await writeDemoModel(file, { preset: 'tiny' });
  const bytes = readFileSync(file);
  const key = Buffer.from(`tokenizer.ggml.${setting}`);
  const at = bytes.indexOf(key) + key.length;
  expect(bytes.readUInt32LE(at)).toBe(7);
  bytes[at + 4] = value ? 1 : 0;
  writeFileSync(file, bytes);
}

describe('tokenizer settings', () => {
  it('continues an empty prompt from the BOS on a model that prepends none', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-nobos-'));
    await demoModelWith(path.join(dir, 'nobos.gguf'), 'add_bos_token', false);
    const engine = engineWith(dir, {});
    await engine.start();
    try {
      const empty = await engine.generate({ model: 'nobos', prompt: '', maxTokens: 8, temperature: 0 });
      expect(empty.usage).toMatchObject({ prompt_tokens: 1, completion_tokens: 8 });
      const hi = await engine.generate({ model: 'nobos', prompt: 'Hi', maxTokens: 8, temperature: 0 });
      expect(hi.usage.prompt_tokens).toBe(2); // no BOS before the text
    } finally {
      await engine.close();
    }
  });

  it('measures a prompt near the end of the context as it is decoded (SentencePiece space prefix): `length`, and nothing fails beside it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-space-'));
    await demoModelWith(path.join(dir, 'spaced.gguf'), 'add_space_prefix', true);
    const engine = engineWith(dir, { context_size: 256 });
    await engine.start();
    try {
      // Without the space a first word can take more tokens than with it ("people": 6 against 1).
      const prompt = 'people ' + 'The quick brown fox jumps over the lazy dog. '.repeat(6);
      const others = [1, 2, 3].map(() => engine.generate({ model: 'spaced', prompt: 'Hello world', maxTokens: 240, temperature: 0 }));
      const near = await engine.generate({ model: 'spaced', prompt, maxTokens: 500, temperature: 0 });
      expect(near.finishReason).toBe('length');
      expect(near.usage.total_tokens).toBe(256);
      for (const other of await Promise.all(others)) expect(other.usage.completion_tokens).toBe(240);
    } finally {
      await engine.close();
    }
  });
});

describe('decode loop at the end of a context', () => {
  it("ends a generation whose sequence is full instead of failing the step it shares", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-full-'));
    await writeDemoModel(path.join(dir, 'tiny.gguf'), { preset: 'tiny' });
    const llama = await getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: LlamaLogLevel.error });
    const model = await llama.loadModel({ modelPath: path.join(dir, 'tiny.gguf') });
    const { contexts, sequences } = await openSequences(model, { ...DEFAULT_CONFIG.engine, context_size: 256, parallel: 2, sequences_per_context: 2 });
    try {
      const [a, b] = sequences as [EngineSequence, EngineSequence];
      const prompt = Array.from({ length: 250 }, (_, i) => (i % 200) + 50) as Token[];
      let generated = 0;
      const other = complete(b.loop, b.sequence, { prompt: 'Hello world', maxTokens: 40, temperature: 0 });
      const sampler = createSampler(model, { temperature: 0, topK: 40, topP: 0.95, minP: 0, seed: 1 });
      try {
        await a.loop.run(a.sequence, prompt, sampler, () => ++generated > 0); // never ends by itself
      } finally {
        sampler.dispose();
      }
      expect(generated).toBe(256 - 250 + 1); // the last sampled token is not decoded
      expect((await other).completionTokens).toBe(40);
    } finally {
      for (const context of contexts) await context.dispose();
      await model.dispose();
      await llama.dispose();
    }
  });
});

describe('several choices of one request on /v1', () => {
  it('streams several choices at once, each the text it gives alone, with the usage of them all', async () => {
    const server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000, 'engine.sequences_per_context': 4 } });
    try {
      await waitForReady(server.url);
      const token = await login(server.url);
      const key = await call(server.url, 'POST', '/api/v1/auth/api-keys', { token, body: { name: 'n', permissions: ['read_models', 'run_inference', 'use_streaming'] } });
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: key.body.key as string, maxRetries: 0 });
      // Greedy: a batch of several sequences gives slightly different numbers than one alone, which
      // can change a sampled token (a seed), hardly ever the most likely one.
      const prompts = ['Hello', 'Once upon a time', 'The cat', 'Hi there'];
      for (const extra of [{}, { stop: ['e', ' w'] }]) {
        const base = { model: 'demo-tiny', max_tokens: 40, temperature: 0, ...extra };
        const alone = [];
        for (const prompt of prompts) alone.push(await client.completions.create({ ...base, prompt }));
        const plain = await client.completions.create({ ...base, prompt: prompts });
        expect(plain.choices.map((c) => c.text)).toEqual(alone.map((a) => a.choices[0]!.text));
        expect(plain.usage!.prompt_tokens).toBe(alone.reduce((sum, a) => sum + a.usage!.prompt_tokens, 0));
        expect(plain.usage!.completion_tokens).toBe(alone.reduce((sum, a) => sum + a.usage!.completion_tokens, 0));
        const texts = prompts.map(() => '');
        let usage;
        for await (const chunk of await client.completions.create({ ...base, prompt: prompts, stream: true, stream_options: { include_usage: true } })) {
          for (const choice of chunk.choices) texts[choice.index] += choice.text;
          if (chunk.usage) usage = chunk.usage;
        }
        expect(texts).toEqual(plain.choices.map((c) => c.text));
        expect(usage).toEqual(plain.usage);
        if ('stop' in extra) for (const text of texts) expect(text).not.toMatch(/e| w/);
      }
      // `n` choices of one prompt: its tokens counted once.
      const chat = { model: 'demo-tiny', max_tokens: 30, temperature: 0, messages: [{ role: 'user' as const, content: 'Hi' }] };
      const one = await client.chat.completions.create(chat);
      const three = await client.chat.completions.create({ ...chat, n: 3 });
      expect(three.choices.map((c) => c.message.content)).toEqual([1, 2, 3].map(() => one.choices[0]!.message.content));
      expect(three.usage).toMatchObject({ prompt_tokens: one.usage!.prompt_tokens, completion_tokens: 3 * one.usage!.completion_tokens });
      const contents = ['', '', ''];
      for await (const chunk of await client.chat.completions.create({ ...chat, n: 3, stream: true })) for (const choice of chunk.choices) contents[choice.index] += choice.delta.content ?? '';
      expect(contents).toEqual(three.choices.map((c) => c.message.content));
    } finally {
      await server.close();
    }
  });
});

describe('a failed choice of a /v1 stream', () => {
  it('a choice that was waiting for its place when another failed reads nothing and is not counted', async () => {
    // One place: the second choice waits for the first's, which is handed to it as the first fails.
    const server = await startTestServer({ settings: { 'engine.parallel': 1, 'usage.flush_interval_seconds': 3600 } });
    try {
      await waitForReady(server.url);
      const token = await login(server.url);
      const metricsKey = (await createApiKey(server.url, { token }, { name: 'metrics', permissions: ['read_metrics'] })).key;
      const [context] = (await server.engine.load('demo-tiny')).contexts;
      failDecode(context!).at = 2; // the prompt, then the first choice's first token
      const response = await fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: 'demo-tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 200, temperature: 0, n: 2, stream: true }),
      });
      expect(response.status).toBe(200);
      const body = await response.text();
      expect(body).toContain('"error"');
      expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
      // The failed choice's tokens are unknown (no partial result); the other made and read nothing.
      const metrics = await scrape(server.url, metricsKey);
      expect(metrics.value('inferno_stream_failures_total', { api: 'openai' })).toBe(1);
      expect(metrics.value('inferno_prompt_tokens_total', { api: 'openai' })).toBe(0);
      expect((await call(server.url, 'GET', '/api/v1/usage', { token })).body.data).toEqual([expect.objectContaining({ requests: 0, prompt_tokens: 0, completion_tokens: 0 })]);
      const after = await call(server.url, 'POST', '/v1/chat/completions', { token, body: { model: 'demo-tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5 } });
      expect(after.status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

/** Makes the context's `at`-th decode from now fail as llama.cpp fails one without room. */
function failDecode(context: LlamaContext): { at: number } {
  const internals = context as unknown as { _ctx: Record<string | symbol, unknown> };
  const native = internals._ctx;
  const failing = { at: 0 };
  internals._ctx = new Proxy(native, {
    get: (target, key) => {
      const value = target[key];
      if (key === 'decodeBatch')
        return () => (--failing.at === 0 ? Promise.reject(new Error('could not find a KV slot for the batch (try reducing the size of the batch or increase the context)')) : (value as () => Promise<void>).call(target));
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return failing;
}
