import { defineConfig } from '@hey-api/openapi-ts';

// One spec, two outputs: the SDK's typed operations on hey-api's fetch client, and the server's
// request/response types and zod schemas for validation.
export default defineConfig([
  {
    input: 'openapi.yaml',
    output: { path: 'sdk/src/gen', postProcess: [] },
    plugins: [
      // ky's own retry and timeout are turned off in the transport: the SDK core does both itself.
      { name: '@hey-api/client-ky', baseUrl: false, throwOnError: false },
      '@hey-api/typescript',
      'zod',
      // Validators off: the generated operations must not import zod, so the default browser
      // bundle stays small. Response validation is opt-in through `@inferno/sdk/zod`.
      { name: '@hey-api/sdk', validator: false },
    ],
  },
  {
    input: 'openapi.yaml',
    output: { path: 'server/src/gen', postProcess: [] },
    plugins: ['@hey-api/typescript', 'zod', '@hey-api/schemas'],
  },
]);
