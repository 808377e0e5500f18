// `@inferno/sdk/zod`: the spec's zod schemas, and the response validator built on them. A
// separate entry so that only applications that validate responses bundle zod:
//
//   import { InfernoClient } from '@inferno/sdk';
//   import { responseValidator } from '@inferno/sdk/zod';
//   const client = new InfernoClient({ baseUrl, apiKey, validateResponses: true, responseValidator });

import type { $ZodIssue } from 'zod/v4/core';
import { ResponseValidationError } from './core/errors.js';
import type { ResponseValidator } from './core/options.js';
import * as schemas from './gen/zod.gen.js';

export * from './gen/zod.gen.js';

interface AsyncSchema {
  safeParseAsync(data: unknown): Promise<{ success: true } | { success: false; error: { issues: $ZodIssue[] } }>;
}

/**
 * Checks a response against the generated schema of its operation (`listModels` ->
 * `zListModelsResponse`) and throws a {@link ResponseValidationError} naming each bad field.
 * Operations added to the spec are covered as soon as the code is regenerated.
 */
export const responseValidator: ResponseValidator = async (operation, data) => {
  const schema = schemaFor(operation);
  if (!schema) return;
  const result = await schema.safeParseAsync(data);
  if (!result.success) {
    throw new ResponseValidationError(
      operation,
      result.error.issues.map((issue) => ({ path: formatPath(issue.path), message: issue.message })),
    );
  }
};

function schemaFor(operation: string): AsyncSchema | undefined {
  const name = `z${operation.charAt(0).toUpperCase()}${operation.slice(1)}Response`;
  const schema = (schemas as Record<string, unknown>)[name];
  return typeof schema === 'object' && schema !== null && 'safeParseAsync' in schema ? (schema as AsyncSchema) : undefined;
}

/** `['data', 0, 'size_bytes']` -> `data[0].size_bytes`. */
function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}
