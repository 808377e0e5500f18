import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['sdk/test/**/*.test.ts', 'server/test/**/*.test.ts', 'test/**/*.test.ts', 'contract/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Servers and the llama.cpp engine are heavy on a 2-core machine: one test file at a time.
    fileParallelism: false,
  },
});
