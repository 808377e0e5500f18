import type { ZodType } from 'zod';
import * as z from 'zod';
import type { ValidationIssue } from '../gen/types.gen.js';
import type { AppMiddleware } from './context.js';
import { validationError } from './errors.js';

export interface RequestSchemas {
  body?: ZodType;
  query?: ZodType;
  params?: ZodType;
}

function formatPath(location: string, path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, part) => (typeof part === 'number' ? `${out}[${part}]` : `${out}.${String(part)}`), location);
}

// Request bodies in the spec are closed objects (`additionalProperties: false`), which the
// generated schemas do not enforce: unknown fields are refused here, not silently dropped.
function strict(schema: ZodType): ZodType {
  return schema instanceof z.ZodObject ? schema.strict() : schema;
}

/**
 * Validates the request against the schemas generated from openapi.yaml; every bad field is
 * listed in `details` as `{path, message}`.
 */
export function validate(schemas: RequestSchemas): AppMiddleware {
  const body = schemas.body && strict(schemas.body);
  const checks: [keyof RequestSchemas, ZodType | undefined][] = [
    ['params', schemas.params],
    ['query', schemas.query],
    ['body', body],
  ];
  return async (ctx, next) => {
    const issues: ValidationIssue[] = [];
    const sources = { params: (ctx as unknown as { params?: unknown }).params ?? {}, query: ctx.query, body: ctx.state.input.body };
    for (const [location, schema] of checks) {
      if (!schema) continue;
      const result = schema.safeParse(sources[location]);
      if (result.success) {
        ctx.state.input[location] = result.data;
      } else {
        for (const issue of result.error.issues) issues.push({ path: formatPath(location, issue.path), message: issue.message });
      }
    }
    if (issues.length > 0) throw validationError(issues);
    await next();
  };
}
