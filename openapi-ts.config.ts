import { defineConfig } from '@hey-api/openapi-ts';

// One spec, two outputs: the SDK's typed operations on the ky client, and the server's
// request/response types and zod schemas for validation.
export default defineConfig([
  {
    input: 'openapi.yaml',
    output: { path: 'sdk/src/gen', postProcess: [] },
    plugins: [
      { name: '@hey-api/client-ky', baseUrl: false, throwOnError: false },
      '@hey-api/typescript',
      'zod',
      { name: '@hey-api/sdk', validator: true },
    ],
  },
  {
    input: 'openapi.yaml',
    output: { path: 'server/src/gen', postProcess: [] },
    plugins: ['@hey-api/typescript', 'zod'],
  },
]);
