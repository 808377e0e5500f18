import { defineConfig } from '@hey-api/openapi-ts';

// One spec, two outputs: the SDK's typed operations on hey-api's fetch client, and the server's
// request/response types and zod schemas for validation.
export default defineConfig([
  {
    input: 'openapi.yaml',
    output: { path: 'sdk/src/gen', postProcess: [] },
    plugins: [
      // The operations are typed for hey-api's fetch client; the SDK runs them on its own lean
      // equivalent (sdk/src/core/http.ts), which sends with fetch(url, init).
      { name: '@hey-api/client-fetch', baseUrl: false, throwOnError: false },
      '@hey-api/typescript',
      'zod',
      // Validators off: the generated operations must not import zod, so the default browser
      // bundle stays small. Response validation is opt-in through `@inferno/sdk/zod`.
      { name: '@hey-api/sdk', validator: false, client: false },
    ],
  },
  {
    input: 'openapi.yaml',
    output: { path: 'server/src/gen', postProcess: [] },
    plugins: ['@hey-api/typescript', 'zod', '@hey-api/schemas'],
  },
]);
