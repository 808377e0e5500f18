// What agent frameworks send, against the real server on the demo model: the Vercel AI SDK
// (`ai` with `@ai-sdk/openai-compatible`) and LangChain (`@langchain/openai`). Structured output,
// forced tool calls and a tool-result loop must hold on random weights.
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { AIMessage, HumanMessage, ToolMessage } from '@langchain/core/messages';
import { tool as langchainTool } from '@langchain/core/tools';
import { ChatOpenAI, OpenAI as LangChainOpenAI } from '@langchain/openai';
import { generateObject, generateText, isStepCount, Output, tool } from 'ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

const MODEL = 'demo-tiny';
// Schemas as applications write them (unbounded strings and arrays), with the frameworks' default token limits.
const Recipe = z.object({ title: z.string(), minutes: z.int(), vegan: z.boolean(), steps: z.array(z.string()) });
const Weather = z.object({ city: z.string(), unit: z.enum(['c', 'f']) });

let server: TestServer;
let apiKey: string;
beforeAll(async () => {
  server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000 } });
  const token = await login(server.url);
  const res = await call(server.url, 'POST', '/api/v1/auth/api-keys', { token, body: { name: 'frameworks', permissions: ['read_models', 'run_inference', 'use_streaming'] } });
  apiKey = res.body.key as string;
});
afterAll(() => server.close());

describe('the Vercel AI SDK through @ai-sdk/openai-compatible', () => {
  const provider = () => createOpenAICompatible({ name: 'inferno', baseURL: `${server.url}/v1`, apiKey, supportsStructuredOutputs: true });

  it('generateObject and generateText with Output.object return objects valid against the zod schema', async () => {
    for (const seed of [1, 2, 3]) {
      const { object } = await generateObject({ model: provider().chatModel(MODEL), schema: Recipe, prompt: 'A quick recipe', seed, maxRetries: 0 });
      expect(Recipe.safeParse(object).success).toBe(true);
      const { output } = await generateText({ model: provider().chatModel(MODEL), output: Output.object({ schema: Recipe }), prompt: 'A quick recipe', seed, maxRetries: 0 });
      expect(Recipe.safeParse(output).success).toBe(true);
    }
  });

  it('a forced tool call, its result and the answer run as a two-step agent loop', async () => {
    const seen: unknown[] = [];
    const result = await generateText({
      model: provider().chatModel(MODEL),
      tools: {
        get_weather: tool({
          description: 'The weather in a city',
          inputSchema: Weather,
          execute: async (input) => {
            seen.push(input);
            return { temperature: 18, sky: 'cloudy' };
          },
        }),
      },
      toolChoice: { type: 'tool', toolName: 'get_weather' },
      prepareStep: ({ stepNumber }) => (stepNumber > 0 ? { toolChoice: 'none' } : {}),
      stopWhen: isStepCount(2),
      prompt: 'What is the weather in Rome?',
      seed: 4,
      maxRetries: 0,
    });
    expect(seen).toHaveLength(1);
    expect(Weather.safeParse(seen[0]).success).toBe(true);
    expect(result.steps).toHaveLength(2);
    expect(result.steps[0]!.finishReason).toBe('tool-calls');
    expect(result.steps[0]!.toolCalls[0]).toMatchObject({ toolName: 'get_weather' });
    expect(typeof result.text).toBe('string');
  });
});

describe('LangChain through @langchain/openai', () => {
  const chat = () => new ChatOpenAI({ model: MODEL, apiKey, configuration: { baseURL: `${server.url}/v1` }, temperature: 0, maxRetries: 0 });

  it('withStructuredOutput returns objects valid against the zod schema, by json_schema and by function calling', async () => {
    for (const method of ['jsonSchema', 'functionCalling'] as const) {
      const structured = chat().withStructuredOutput(Recipe, { method, name: 'recipe' });
      const recipe = await structured.invoke('A quick recipe');
      expect(Recipe.safeParse(recipe).success, method).toBe(true);
    }
  });

  it('bindTools with a forced tool returns valid arguments; the tool result gets an answer', async () => {
    const getWeather = langchainTool(async (input) => JSON.stringify({ temperature: 12, city: input.city }), { name: 'get_weather', description: 'The weather in a city', schema: Weather });
    const question = new HumanMessage('What is the weather in Lima?');
    const called = await chat().bindTools([getWeather], { tool_choice: 'get_weather' }).invoke([question]);
    expect(called.tool_calls).toHaveLength(1);
    const [toolCall] = called.tool_calls!;
    expect(toolCall!.name).toBe('get_weather');
    expect(Weather.safeParse(toolCall!.args).success).toBe(true);

    const result = await getWeather.invoke(toolCall!);
    expect(result).toBeInstanceOf(ToolMessage);
    const answer = await chat().bindTools([getWeather], { tool_choice: 'none' }).invoke([question, new AIMessage(called), result]);
    expect(answer.tool_calls ?? []).toHaveLength(0);
    expect(typeof answer.content).toBe('string');
  });

  it('OpenAI.generate() with several prompts sends a prompt list and gets one generation per prompt', async () => {
    const llm = new LangChainOpenAI({ model: MODEL, apiKey, configuration: { baseURL: `${server.url}/v1` }, temperature: 0, maxTokens: 6, maxRetries: 0 });
    const result = await llm.generate(['Once upon a time', 'The sea', 'A city']);
    expect(result.generations).toHaveLength(3);
    for (const generation of result.generations) expect(typeof generation[0]!.text).toBe('string');
  });
});
