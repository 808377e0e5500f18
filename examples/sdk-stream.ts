// Streams a completion from an Inferno server with the SDK, logging in with a username and
// password (the client logs in by itself, and again if its token expires).
//
//   INFERNO_URL=http://127.0.0.1:8080 INFERNO_PASSWORD=... npx tsx examples/sdk-stream.ts "Once upon a time"
//
// In an application, import from '@inferno/sdk' instead of the source path.
import { APIError, InfernoClient, InfernoError } from '../sdk/src/index.js';

const client = new InfernoClient({
  baseUrl: process.env.INFERNO_URL ?? 'http://127.0.0.1:8080',
  credentials: { username: process.env.INFERNO_USER ?? 'admin', password: process.env.INFERNO_PASSWORD ?? '' },
  rateLimit: { throttle: true },
});

const prompt = process.argv[2] ?? 'Once upon a time';
const controller = new AbortController();
process.once('SIGINT', () => controller.abort()); // Ctrl-C closes the stream and stops the generation

try {
  const { data: models } = await client.models.list();
  const model = models[0]?.id;
  if (!model) throw new Error('The server has no models');
  process.stdout.write(`${model}> ${prompt}`);
  for await (const event of client.inference.stream({ model, prompt, max_tokens: 64 }, { signal: controller.signal })) {
    if (event.event === 'token') process.stdout.write(event.data.text);
    else console.log(`\n[${event.data.finish_reason}, ${event.data.timings.tokens_per_second.toFixed(0)} tokens/s]`);
  }
  console.log(`rate limit: ${client.rateLimit?.remaining}/${client.rateLimit?.limit} left`);
} catch (error) {
  if (error instanceof APIError) console.error(`\n${error.name} (${error.status}, request ${error.requestId}): ${error.message}`);
  else if (error instanceof InfernoError) console.error(`\n${error.name} (request ${error.requestId ?? 'none'}): ${error.message}`);
  else throw error;
  process.exitCode = 1;
}
