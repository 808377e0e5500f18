// Structured output, tool calling, `n` and prompt lists on /v1, with the official openai client
// against the real server on the demo model (random weights: only the grammar makes it valid).
import OpenAI, { APIError } from 'openai';
import { zodFunction, zodResponseFormat } from 'openai/helpers/zod';
import type { ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Permission } from '../src/gen/types.gen.js';
import { call, login, startTestServer, type TestServer } from '../../test/helpers/server.js';

const MODEL = 'demo-tiny';
const SEEDS = [1, 2, 3, 4, 5, 6];
const ALL_INFERENCE: Permission[] = ['read_models', 'run_inference', 'use_streaming'];

// Bounded strings and arrays, so that random weights finish the JSON well within max_tokens.
const Person = z.object({
  name: z.string().max(24),
  age: z.int(),
  height: z.number(),
  kind: z.enum(['cat', 'dog', 'fish']),
  nickname: z.string().max(8).nullable(),
  tags: z.array(z.string().max(6)).max(3),
  pet: z.discriminatedUnion('type', [z.object({ type: z.literal('none') }), z.object({ type: z.literal('some'), legs: z.int() })]),
});
const Weather = z.object({ city: z.string().max(20), days: z.int(), unit: z.enum(['c', 'f']) });
const Time = z.object({ zone: z.enum(['utc', 'cet', 'pst']) });
const weatherTool = zodFunction({ name: 'get_weather', parameters: Weather, description: 'The weather forecast for a city' });
const timeTool = zodFunction({ name: 'get_time', parameters: Time, description: 'The time in a zone' });
const TOOLS: ChatCompletionTool[] = [weatherTool, timeTool];
const ask: ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is the weather in Paris?' }];

async function createKey(server: TestServer): Promise<string> {
  const token = await login(server.url);
  const res = await call(server.url, 'POST', '/api/v1/auth/api-keys', { token, body: { name: 'structured', permissions: ALL_INFERENCE } });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.key as string;
}

async function failure(request: () => Promise<unknown>): Promise<APIError> {
  try {
    await request();
  } catch (error) {
    if (error instanceof APIError) return error;
    throw error;
  }
  throw new Error('the request succeeded');
}

describe('structured output and tools on /v1 with the official openai client', () => {
  let server: TestServer;
  let client: OpenAI;

  beforeAll(async () => {
    server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 10_000 } });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: await createKey(server), maxRetries: 0 });
  });
  afterAll(() => server.close());

  it('chat.completions.parse() with a zod schema returns a parsed object, for every seed', async () => {
    for (const seed of SEEDS) {
      const completion = await client.chat.completions.parse({ model: MODEL, messages: ask, response_format: zodResponseFormat(Person, 'person'), seed, max_tokens: 400 });
      const [choice] = completion.choices;
      expect(choice!.finish_reason, `seed ${seed}`).toBe('stop');
      // parse() has already validated with zod (it throws otherwise); check again independently.
      expect(Person.parse(JSON.parse(choice!.message.content!))).toEqual(choice!.message.parsed);
    }
  });

  it('a typical schema with unbounded strings finishes within the default max_tokens (the demo model closes JSON like a real one)', async () => {
    const Profile = z.object({ name: z.string(), bio: z.string(), age: z.number(), hobbies: z.array(z.string()), address: z.object({ city: z.string(), zip: z.string() }) });
    for (const seed of SEEDS) {
      const completion = await client.chat.completions.parse({ model: MODEL, messages: ask, response_format: zodResponseFormat(Profile, 'profile'), seed });
      expect(completion.choices[0]!.finish_reason, `seed ${seed}`).toBe('stop');
      expect(Profile.parse(completion.choices[0]!.message.parsed)).toBeTruthy();
    }
  });

  it('streams a json_schema answer that the stream helper parses', async () => {
    const stream = client.chat.completions.stream({ model: MODEL, messages: ask, response_format: zodResponseFormat(Person, 'person'), seed: 9, max_tokens: 400, stream_options: { include_usage: true } });
    const final = await stream.finalChatCompletion();
    expect(final.choices[0]!.finish_reason).toBe('stop');
    expect(Person.parse(final.choices[0]!.message.parsed)).toBeTruthy();
    expect(final.usage!.completion_tokens).toBeGreaterThan(5);
    const plain = await client.chat.completions.create({ model: MODEL, messages: ask, response_format: zodResponseFormat(Person, 'person'), seed: 9, max_tokens: 400 });
    expect(final.choices[0]!.message.content).toBe(plain.choices[0]!.message.content);
  });

  it('json_object always answers a JSON object', async () => {
    for (const seed of SEEDS) {
      const completion = await client.chat.completions.create({ model: MODEL, messages: ask, response_format: { type: 'json_object' }, seed });
      const { content } = completion.choices[0]!.message;
      expect(completion.choices[0]!.finish_reason).toBe('stop');
      const parsed: unknown = JSON.parse(content!);
      expect(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed), content!).toBe(true);
    }
  });

  it('says finish_reason length when max_tokens cuts the JSON off', async () => {
    const completion = await client.chat.completions.create({ model: MODEL, messages: ask, response_format: zodResponseFormat(Person, 'person'), seed: 1, max_tokens: 4 });
    expect(completion.choices[0]!.finish_reason).toBe('length');
    expect(() => JSON.parse(completion.choices[0]!.message.content!)).toThrow();
  });

  it('constrains a text completion with response_format too', async () => {
    const request = { model: MODEL, prompt: 'A person:', seed: 4, max_tokens: 400, response_format: zodResponseFormat(Person, 'person') };
    const completion = await client.completions.create(request as OpenAI.CompletionCreateParamsNonStreaming);
    expect(completion.choices[0]!.finish_reason).toBe('stop');
    expect(Person.safeParse(JSON.parse(completion.choices[0]!.text)).success).toBe(true);
  });

  it('a named tool_choice always calls that function with valid arguments', async () => {
    for (const seed of SEEDS.slice(0, 3)) {
      const completion = await client.chat.completions.create({ model: MODEL, messages: ask, tools: TOOLS, tool_choice: { type: 'function', function: { name: 'get_weather' } }, seed, max_tokens: 200 });
      const [choice] = completion.choices;
      expect(choice!.finish_reason).toBe('tool_calls');
      expect(choice!.message.content).toBeNull();
      const calls = choice!.message.tool_calls!;
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatchObject({ id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'get_weather' } });
      const fn = (calls[0] as OpenAI.ChatCompletionMessageFunctionToolCall).function;
      expect(Weather.safeParse(JSON.parse(fn.arguments)).success, fn.arguments).toBe(true);
    }
  });

  it('streams a forced call as delta.tool_calls with index; finalChatCompletion() assembles it', async () => {
    const request = { model: MODEL, messages: ask, tools: TOOLS, tool_choice: { type: 'function' as const, function: { name: 'get_weather' } }, seed: 2, max_tokens: 200 };
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    const stream = client.chat.completions.stream({ ...request, stream_options: { include_usage: true } });
    stream.on('chunk', (chunk) => chunks.push(chunk));
    const final = await stream.finalChatCompletion();
    const pieces = chunks.flatMap((c) => c.choices.flatMap((choice) => choice.delta.tool_calls ?? []));
    expect(pieces.length).toBeGreaterThan(2); // the arguments arrive as they are generated
    expect(pieces.every((piece) => piece.index === 0)).toBe(true);
    expect(pieces[0]).toMatchObject({ id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'get_weather' } });
    const [choice] = final.choices;
    expect(choice!.finish_reason).toBe('tool_calls');
    const fn = (choice!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall).function;
    expect(fn.name).toBe('get_weather');
    expect(Weather.safeParse(JSON.parse(fn.arguments)).success).toBe(true);
    expect((choice!.message.tool_calls![0] as { function: { parsed_arguments?: unknown } }).function.parsed_arguments).toEqual(JSON.parse(fn.arguments)); // zodFunction tools are parsed
    // The same call as the plain answer, but for its id.
    const plain = await client.chat.completions.create(request);
    expect(JSON.parse(fn.arguments)).toEqual(JSON.parse((plain.choices[0]!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall).function.arguments));
    expect(final.usage).toEqual(plain.usage);
  });

  it('tool_choice required always calls one of the tools, plainly and streamed', async () => {
    for (const seed of SEEDS.slice(0, 3)) {
      const request = { model: MODEL, messages: ask, tools: TOOLS, tool_choice: 'required' as const, seed, max_tokens: 200 }; // parallel_tool_calls defaults to true
      const completion = await client.chat.completions.create(request);
      const streamed = await client.chat.completions.stream(request).finalChatCompletion();
      for (const choice of [completion.choices[0]!, streamed.choices[0]!]) {
        expect(choice.finish_reason).toBe('tool_calls');
        expect(choice.message.tool_calls).toHaveLength(1);
        const fn = (choice.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall).function;
        const schema = fn.name === 'get_weather' ? Weather : fn.name === 'get_time' ? Time : undefined;
        expect(schema, fn.name).toBeDefined();
        expect(schema!.safeParse(JSON.parse(fn.arguments)).success, fn.arguments).toBe(true);
      }
    }
  });

  it('runs an agent loop: a forced call, the tool result, then an answer that sees it', async () => {
    const first = await client.chat.completions.create({ model: MODEL, messages: ask, tools: TOOLS, tool_choice: { type: 'function', function: { name: 'get_weather' } }, seed: 5, max_tokens: 200 });
    const assistant = first.choices[0]!.message;
    const toolCall = assistant.tool_calls![0]!;
    const withResult = (result: string): ChatCompletionMessageParam[] => [
      ...ask,
      { role: 'assistant', content: null, tool_calls: assistant.tool_calls },
      { role: 'tool', tool_call_id: toolCall.id, content: result },
    ];
    const answer = await client.chat.completions.create({ model: MODEL, messages: withResult('{"temperature": 21, "sky": "clear"}'), tools: TOOLS, tool_choice: 'none', seed: 5, max_tokens: 30 });
    expect(answer.choices[0]!.finish_reason).not.toBe('tool_calls');
    expect(typeof answer.choices[0]!.message.content).toBe('string');
    // The call and its result are in the prompt: a longer result is a longer prompt.
    const longer = await client.chat.completions.create({ model: MODEL, messages: withResult(`{"temperature": 21, "sky": "clear", "note": "${'windy '.repeat(20)}"}`), tools: TOOLS, tool_choice: 'none', seed: 5, max_tokens: 1 });
    expect(longer.usage!.prompt_tokens).toBeGreaterThan(answer.usage!.prompt_tokens + 20);
    // A third turn after the answer, with tool_choice auto: the model decides, the request runs.
    const third = await client.chat.completions.create({
      model: MODEL,
      messages: [...withResult('{"temperature": 21}'), { role: 'assistant', content: answer.choices[0]!.message.content }, { role: 'user', content: 'And tomorrow?' }],
      tools: TOOLS,
      seed: 5,
      max_tokens: 30,
    });
    expect(['stop', 'length', 'tool_calls']).toContain(third.choices[0]!.finish_reason);

    const orphan = await failure(() => client.chat.completions.create({ model: MODEL, messages: [...ask, { role: 'tool', tool_call_id: 'call_unknown', content: '1' }] }));
    expect(orphan).toMatchObject({ status: 400, param: 'messages[1].tool_call_id' });
  });

  it('n: 3 gives three choices generated in parallel, each counted in usage; choice i uses seed + i', async () => {
    const request = { model: MODEL, messages: ask, seed: 11, max_tokens: 12 };
    const three = await client.chat.completions.create({ ...request, n: 3 });
    expect(three.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    const singles = await Promise.all([11, 12, 13].map((seed) => client.chat.completions.create({ ...request, seed })));
    expect(three.choices.map((c) => c.message.content)).toEqual(singles.map((s) => s.choices[0]!.message.content));
    const completionTokens = singles.reduce((n, s) => n + s.usage!.completion_tokens, 0);
    expect(three.usage).toEqual({ prompt_tokens: singles[0]!.usage!.prompt_tokens, completion_tokens: completionTokens, total_tokens: singles[0]!.usage!.prompt_tokens + completionTokens });

    // Streamed: the chunks of the choices interleave, by index; the usage chunk sums them.
    const stream = await client.chat.completions.create({ ...request, n: 3, stream: true, stream_options: { include_usage: true } });
    const texts = ['', '', ''];
    let usage;
    for await (const chunk of stream) {
      for (const choice of chunk.choices) texts[choice.index] += choice.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(texts).toEqual(three.choices.map((c) => c.message.content));
    expect(usage).toEqual(three.usage);
  });

  it('takes [limits] max_choices from PATCH /api/v1/config at run time', async () => {
    const token = await login(server.url);
    const patch = (maxChoices: number) => call(server.url, 'PATCH', '/api/v1/config', { token, body: { limits: { max_choices: maxChoices } } });
    expect((await patch(2)).status).toBe(200);
    try {
      expect(await failure(() => client.chat.completions.create({ model: MODEL, messages: ask, n: 3, max_tokens: 2 }))).toMatchObject({ status: 400, param: 'n' });
      expect((await client.chat.completions.create({ model: MODEL, messages: ask, n: 2, max_tokens: 2 })).choices).toHaveLength(2);
    } finally {
      expect((await patch(16)).status).toBe(200);
    }
  });

  it('answers a prompt list with one choice per prompt, index in order, and n per prompt', async () => {
    const prompts = ['Once upon a time', 'The weather', 'In a galaxy'];
    const request = { model: MODEL, seed: 3, max_tokens: 8 };
    const listed = await client.completions.create({ ...request, prompt: prompts });
    expect(listed.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    const singles = await Promise.all(prompts.map((prompt) => client.completions.create({ ...request, prompt })));
    expect(listed.choices.map((c) => c.text)).toEqual(singles.map((s) => s.choices[0]!.text));
    expect(listed.usage!.prompt_tokens).toBe(singles.reduce((n, s) => n + s.usage!.prompt_tokens, 0));

    const twoEach = await client.completions.create({ ...request, prompt: prompts.slice(0, 2), n: 2, echo: true });
    expect(twoEach.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(twoEach.choices.map((c) => c.text.startsWith(prompts[c.index < 2 ? 0 : 1]!))).toEqual([true, true, true, true]);

    const stream = await client.completions.create({ ...request, prompt: prompts, stream: true, stream_options: { include_usage: true } });
    const texts = ['', '', ''];
    let usage;
    for await (const chunk of stream) {
      for (const choice of chunk.choices) texts[choice.index] += choice.text;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(texts).toEqual(listed.choices.map((c) => c.text));
    expect(usage).toEqual(listed.usage);

    const tooMany = await failure(() => client.completions.create({ ...request, prompt: Array.from({ length: 9 }, () => 'x'), n: 2 }));
    expect(tooMany).toMatchObject({ status: 400, param: 'prompt' });
  });

  it('refuses a schema keyword it cannot enforce with 400 naming the keyword', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ type: 'object', properties: { email: { type: 'string', pattern: '^.+@.+$' } } }, 'response_format.json_schema.schema.properties.email.pattern', /pattern/],
      [{ type: 'object', properties: { age: { type: 'integer', minimum: 18 } } }, 'response_format.json_schema.schema.properties.age.minimum', /minimum/],
      [{ allOf: [{ type: 'object' }] }, 'response_format.json_schema.schema.allOf', /allOf/],
      [{ type: 'string', format: 'email' }, 'response_format.json_schema.schema.format', /email/],
      [{ type: 'object', properties: { a: { $ref: '#/$defs/missing' } } }, 'response_format.json_schema.schema.properties.a.$ref', /missing/],
    ];
    for (const [schema, param, message] of cases) {
      const error = await failure(() => client.chat.completions.create({ model: MODEL, messages: ask, response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } }));
      expect(error, JSON.stringify(schema)).toMatchObject({ status: 400, type: 'invalid_request_error', param });
      expect(error.message).toMatch(message);
    }
    const badTool = await failure(() => client.chat.completions.create({ model: MODEL, messages: ask, tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { x: { not: {} } } } } }] }));
    expect(badTool).toMatchObject({ status: 400, param: 'tools[0].function.parameters.properties.x.not' });
  });

  it('refuses hostile schemas and oversized tools quickly with 400, and keeps serving', async () => {
    let deep: Record<string, unknown> = { type: 'integer' };
    for (let i = 0; i < 2_000; i++) deep = { type: 'object', properties: { x: deep } };
    const hostile: Record<string, unknown>[] = [
      deep,
      { enum: Array.from({ length: 50_000 }, (_, i) => `value-${i}`) },
      { $defs: { a: { $ref: '#/$defs/b' }, b: { anyOf: [{ $ref: '#/$defs/a' }, { type: 'null' }] } }, $ref: '#/$defs/a' },
      { type: 'array', items: { type: 'string', maxLength: 100_000 }, minItems: 1_000_000 },
      { type: 'object', properties: Object.fromEntries(Array.from({ length: 3_000 }, (_, i) => [`p${i}`, { type: 'string' }])) },
    ];
    for (const schema of hostile) {
      const started = performance.now();
      const error = await failure(() => client.chat.completions.create({ model: MODEL, messages: ask, response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } }));
      expect(error.status).toBe(400);
      expect(performance.now() - started).toBeLessThan(5_000); // generous: a stall would be far longer
    }
    const manyTools = Array.from({ length: 65 }, (_, i) => ({ type: 'function' as const, function: { name: `tool_${i}` } }));
    expect(await failure(() => client.chat.completions.create({ model: MODEL, messages: ask, tools: manyTools }))).toMatchObject({ status: 400, param: 'tools' });
    const bigTool = [{ type: 'function' as const, function: { name: 'big', description: 'x'.repeat(4_000), parameters: { type: 'object', properties: Object.fromEntries(Array.from({ length: 1_500 }, (_, i) => [`p${i}`, { type: 'boolean', description: 'y'.repeat(40) }])) } } }];
    expect(await failure(() => client.chat.completions.create({ model: MODEL, messages: ask, tools: bigTool }))).toMatchObject({ status: 400, param: 'tools' });
    const still = await client.chat.completions.create({ model: MODEL, messages: ask, max_tokens: 3 });
    expect(still.choices).toHaveLength(1);
  });

  it('refuses what it does not honour: other content parts, legacy functions, unknown or conflicting tool choices', async () => {
    const image = await failure(() => client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: [{ type: 'text', text: 'Look' }, { type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }] }));
    expect(image).toMatchObject({ status: 400, param: 'messages[0].content[1]' });
    expect(image.message).toMatch(/image_url.*supported: text/);
    const legacy = await failure(() => client.chat.completions.create({ model: MODEL, messages: ask, functions: [{ name: 'f' }] } as OpenAI.ChatCompletionCreateParamsNonStreaming));
    expect(legacy).toMatchObject({ status: 400, param: 'functions' });
    const unknownTool = await failure(() => client.chat.completions.create({ model: MODEL, messages: ask, tools: TOOLS, tool_choice: { type: 'function', function: { name: 'nope' } } }));
    expect(unknownTool).toMatchObject({ status: 400, param: 'tool_choice' });
    const withoutTools = await failure(() => client.chat.completions.create({ model: MODEL, messages: ask, tool_choice: 'required' }));
    expect(withoutTools).toMatchObject({ status: 400, param: 'tool_choice' });
    const both = await failure(() => client.chat.completions.create({ model: MODEL, messages: ask, tools: TOOLS, response_format: { type: 'json_object' } }));
    expect(both).toMatchObject({ status: 400, param: 'tool_choice' });
    const badArguments = await failure(() => client.chat.completions.create({ model: MODEL, messages: [...ask, { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_time', arguments: '{not json' } }] }] }));
    expect(badArguments).toMatchObject({ status: 400, param: 'messages[1].tool_calls[0].function.arguments' });
  });
});
