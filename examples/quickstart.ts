// Quick start: log in as an admin, create a scoped API key, use it, read the rate-limit state,
// and handle a typed error.
//
//   INFERNO_URL=http://127.0.0.1:8080 INFERNO_PASSWORD=<admin password> npx tsx examples/quickstart.ts
//
// In an application, import from '@inferno/sdk' instead of the source path.
import { InfernoClient, PermissionDeniedError, RateLimitError } from '../sdk/src/index.js';

const baseUrl = process.env.INFERNO_URL ?? 'http://127.0.0.1:8080';

// 1. An admin session: the client logs in when first needed (and again if the token expires).
const admin = new InfernoClient({
  baseUrl,
  credentials: { username: process.env.INFERNO_USER ?? 'admin', password: process.env.INFERNO_PASSWORD ?? '' },
});
const me = await admin.auth.me();
console.log(`logged in as ${me.user.username} (${me.user.role}, ${me.permissions.length} permissions)`);

// 2. A key for an application, with only what it needs. The raw key is shown this once.
const created = await admin.apiKeys.create({ name: 'quickstart', permissions: ['read_models', 'run_inference'], expires_in_days: 1 });
console.log(`created API key ${created.prefix}… with ${created.permissions.join(', ')}`);

try {
  // 3. The application's client uses the key.
  const app = new InfernoClient({ baseUrl, apiKey: created.key });
  const { data: models } = await app.models.list();
  console.log(`models: ${models.map((m) => `${m.id} (${m.architecture ?? '?'}, ${m.parameter_count ?? '?'} parameters)`).join(', ')}`);

  const model = models[0]?.id;
  if (model) {
    const answer = await app.inference.create({ model, prompt: 'The quick brown fox', max_tokens: 16, seed: 1 });
    console.log(`completion (${answer.finish_reason}, ${answer.usage.completion_tokens} tokens): ${JSON.stringify(answer.text)}`);
  }

  // 4. Every response updates the rate-limit state.
  const limit = app.rateLimit;
  if (limit) console.log(`rate limit: ${limit.remaining}/${limit.limit} left until ${limit.reset.toISOString()}`);

  // 5. Errors are typed: this key may not manage users.
  try {
    await app.users.list();
  } catch (error) {
    if (error instanceof PermissionDeniedError) console.log(`as expected, ${error.code} (${error.status}): ${error.message} [request ${error.requestId}]`);
    else if (error instanceof RateLimitError) console.log(`rate limited: retry in ${error.retryAfter} s`);
    else throw error;
  }
} finally {
  // 6. Revoke the key when the application no longer needs it.
  await admin.apiKeys.revoke(created.id);
  console.log('revoked the key');
}
