// Browser bundle size of the SDK: esbuild (bundle, minify, platform browser, ESM), then gzip.
// Target: the main entry at most 15 kB min+gzip without zod.
//
//   npx tsx bench/sdk-bundle.ts
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';

const entries = {
  'InfernoClient only': "export { InfernoClient } from './sdk/src/index.ts';",
  'whole main entry': "export * from './sdk/src/index.ts';",
  'main entry + @inferno/sdk/zod': "export * from './sdk/src/index.ts'; export * from './sdk/src/zod.ts';",
  // For comparison: what ky (the HTTP layer the SDK had before it sent with fetch itself) adds alone.
  'ky alone (not in the SDK)': "export { default } from 'ky';",
};

console.log('bundle                           minified    gzip');
for (const [name, contents] of Object.entries(entries)) {
  const result = await build({
    stdin: { contents, resolveDir: process.cwd(), loader: 'ts' },
    bundle: true,
    minify: true,
    platform: 'browser',
    format: 'esm',
    write: false,
    metafile: true,
  });
  const code = result.outputFiles[0]!.contents;
  const gzip = gzipSync(code, { level: 9 }).length;
  const hasZod = Object.keys(result.metafile.inputs).some((file) => file.includes('node_modules/zod/'));
  console.log(
    `${name.padEnd(32)} ${(code.length / 1024).toFixed(1).padStart(6)} kB ${(gzip / 1024).toFixed(1).padStart(6)} kB${hasZod ? '  (zod)' : ''}`,
  );
}
