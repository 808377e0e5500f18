// The native equivalents of structured output and tools, through the SDK against the real server
// (responses checked against the spec's schemas).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startTestServer, type TestServer } from '../../test/helpers/server.js';
import { InfernoClient, ValidationError, type InferenceParams } from '../src/index.js';
import { responseValidator } from '../src/zod.js';

const MODEL = 'demo-tiny';
const Weather = z.object({ city: z.string().max(20), days: z.int(), unit: z.enum(['c', 'f']) });
const tools: InferenceParams['tools'] = [
  { name: 'get_weather', description: 'The weather forecast for a city', parameters: z.toJSONSchema(Weather) as Record<string, unknown> },
  { name: 'get_time', parameters: { type: 'object', properties: { zone: { enum: ['utc', 'cet'] } } } },
];
const messages: InferenceParams['messages'] = [{ role: 'user', content: 'What is the weather in Oslo?' }];

let server: TestServer;
let client: InfernoClient;
beforeAll(async () => {
  server = await startTestServer({ settings: { 'rate_limit.requests_per_minute': 1000 } });
  client = new InfernoClient({ baseUrl: server.url, credentials: { username: 'admin', password: server.adminPassword }, validateResponses: true, responseValidator });
});
afterAll(async () => {
  await server?.close();
});

describe('structured output and tools through the native API', () => {
  it('response_format json_schema: the text always validates, for prompts and chats', async () => {
    const schema = z.toJSONSchema(Weather) as Record<string, unknown>;
    for (const seed of [1, 2, 3]) {
      const chat = await client.inference.create({ model: MODEL, messages, seed, max_tokens: 200, response_format: { type: 'json_schema', schema } });
      expect(chat.finish_reason).toBe('stop');
      expect(Weather.safeParse(JSON.parse(chat.text)).success, chat.text).toBe(true);
      const prompt = await client.inference.create({ model: MODEL, prompt: 'Weather:', seed, max_tokens: 200, response_format: { type: 'json_schema', schema } });
      expect(Weather.safeParse(JSON.parse(prompt.text)).success, prompt.text).toBe(true);
    }
    const object = await client.inference.create({ model: MODEL, prompt: 'JSON:', seed: 1, max_tokens: 200, response_format: { type: 'json_object' } });
    expect(JSON.parse(object.text)).toBeTypeOf('object');
  });

  it('a named tool_choice returns tool_calls with arguments as an object; streamed, they come in the done event', async () => {
    const request = { model: MODEL, messages, tools, tool_choice: { name: 'get_weather' }, seed: 4, max_tokens: 200 } satisfies InferenceParams;
    const answer = await client.inference.create(request);
    expect(answer.finish_reason).toBe('tool_calls');
    expect(answer.text).toBe('');
    expect(answer.tool_calls).toHaveLength(1);
    expect(answer.tool_calls![0]).toMatchObject({ id: expect.stringMatching(/^call_/), name: 'get_weather' });
    expect(Weather.safeParse(answer.tool_calls![0]!.arguments).success).toBe(true);

    const events = [];
    for await (const event of client.inference.stream(request)) events.push(event);
    expect(events.map((e) => e.event)).toEqual(['done']);
    const done = events[0]!;
    if (done.event !== 'done') throw new Error('no done event');
    expect(done.data.finish_reason).toBe('tool_calls');
    expect(done.data.tool_calls![0]!.arguments).toEqual(answer.tool_calls![0]!.arguments);
  });

  it('tool_choice required calls one of the tools; a tool result in the messages gets an answer', async () => {
    const called = await client.inference.create({ model: MODEL, messages, tools, tool_choice: 'required', parallel_tool_calls: false, seed: 2, max_tokens: 200 });
    expect(called.finish_reason).toBe('tool_calls');
    const [toolCall] = called.tool_calls!;
    expect(['get_weather', 'get_time']).toContain(toolCall!.name);

    const answer = await client.inference.create({
      model: MODEL,
      messages: [...messages, { role: 'assistant', content: '', tool_calls: called.tool_calls }, { role: 'tool', tool_call_id: toolCall!.id, content: '{"temperature": 3}' }],
      tools,
      tool_choice: 'none',
      seed: 2,
      max_tokens: 20,
    });
    expect(answer.tool_calls).toBeUndefined();
    expect(['stop', 'length']).toContain(answer.finish_reason);
    // The call and its result are rendered into the prompt.
    const without = await client.inference.create({ model: MODEL, messages, seed: 2, max_tokens: 1 });
    expect(answer.usage.prompt_tokens).toBeGreaterThan(without.usage.prompt_tokens + 10);
  });

  it('refuses an unenforceable schema, a tool result without its call and tools on a prompt, as ValidationError with the path', async () => {
    const pattern = await client.inference
      .create({ model: MODEL, prompt: 'x', response_format: { type: 'json_schema', schema: { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9]+$' } } } } })
      .catch((e: unknown) => e);
    expect(pattern).toBeInstanceOf(ValidationError);
    expect((pattern as ValidationError).details[0]).toMatchObject({ path: 'body.response_format.schema.properties.id.pattern', message: expect.stringMatching(/pattern/) });

    const orphan = await client.inference.create({ model: MODEL, messages: [...messages, { role: 'tool', tool_call_id: 'call_x', content: '1' }] }).catch((e: unknown) => e);
    expect((orphan as ValidationError).details[0]).toMatchObject({ path: 'body.messages[1].tool_call_id' });

    const onPrompt = await client.inference.create({ model: MODEL, prompt: 'x', tools }).catch((e: unknown) => e);
    expect((onPrompt as ValidationError).details[0]).toMatchObject({ path: 'body.tools' });
  });

  it('a job runs structured and tool-calling requests like the inference route', async () => {
    const schema = z.toJSONSchema(Weather) as Record<string, unknown>;
    const job = await client.jobs.create({
      requests: [
        { model: MODEL, prompt: 'Weather:', seed: 3, max_tokens: 200, response_format: { type: 'json_schema', schema } },
        { model: MODEL, messages, tools, tool_choice: { name: 'get_weather' }, seed: 3, max_tokens: 200 },
      ],
    });
    let done = job;
    for (const deadline = Date.now() + 60_000; done.status === 'queued' || done.status === 'running'; ) {
      if (Date.now() > deadline) throw new Error('the job did not finish');
      await new Promise((resolve) => setTimeout(resolve, 50));
      done = await client.jobs.get(job.id);
    }
    expect(done.status).toBe('succeeded');
    const [structured, called] = done.results!;
    expect(Weather.safeParse(JSON.parse(structured!.response!.text)).success).toBe(true);
    expect(called!.response).toMatchObject({ finish_reason: 'tool_calls', tool_calls: [{ name: 'get_weather' }] });
    expect(Weather.safeParse(called!.response!.tool_calls![0]!.arguments).success).toBe(true);

    const refused = await client.jobs.create({ requests: [{ model: MODEL, prompt: 'x', response_format: { type: 'json_schema', schema: { not: {} } } }] }).catch((e: unknown) => e);
    expect((refused as ValidationError).details[0]).toMatchObject({ path: 'body.requests[0].response_format.schema.not' });
  });

  it('answers a repeated deterministic structured request from the cache, and a different schema not', async () => {
    const schema = z.toJSONSchema(Weather) as Record<string, unknown>;
    const request = { model: MODEL, prompt: 'Weather:', seed: 8, max_tokens: 200, response_format: { type: 'json_schema' as const, schema } };
    const first = await client.inference.create(request);
    const again = await client.inference.create(request);
    expect(again.text).toBe(first.text);
    const other = await client.inference.create({ ...request, response_format: { type: 'json_object' } });
    expect(() => Weather.parse(JSON.parse(other.text))).toThrow(); // not the cached Weather answer
  });
});
