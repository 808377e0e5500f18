import type { ZodType } from 'zod';
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

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Request bodies in the spec are closed objects (`additionalProperties: false`), which the
 * generated schemas do not enforce (zod strips unknown keys). A key of the input that did not
 * survive parsing, at any depth, is refused here instead of being silently dropped.
 */
function unknownKeys(raw: unknown, parsed: unknown, location: string): ValidationIssue[] {
  if (Array.isArray(raw) && Array.isArray(parsed)) {
    return raw.flatMap((item, i) => unknownKeys(item, parsed[i], `${location}[${i}]`));
  }
  if (!isPlainObject(raw) || !isPlainObject(parsed)) return [];
  return Object.keys(raw).flatMap((key) =>
    key in parsed ? unknownKeys(raw[key], parsed[key], `${location}.${key}`) : [{ path: `${location}.${key}`, message: 'Unknown field' }],
  );
}

/**
 * Query values arrive as strings. Where the schema refuses one that reads as a number or a
 * boolean, it is retried as that type (only those keys, so a digit-string cursor stays a string).
 */
function parseQuery(schema: ZodType, query: Record<string, unknown>) {
  const first = schema.safeParse(query);
  if (first.success) return first;
  const coerced = { ...query };
  for (const issue of first.error.issues) {
    const key = issue.path[0];
    const value = typeof key === 'string' ? query[key] : undefined;
    if (typeof value !== 'string') continue;
    if (/^-?\d+(\.\d+)?$/.test(value)) coerced[key as string] = Number(value);
    else if (value === 'true' || value === 'false') coerced[key as string] = value === 'true';
  }
  return schema.safeParse(coerced);
}

/**
 * Validates the request against the schemas generated from openapi.yaml; every bad field is
 * listed in `details` as `{path, message}`.
 */
export function validate(schemas: RequestSchemas): AppMiddleware {
  const checks: [keyof RequestSchemas, ZodType | undefined][] = [
    ['params', schemas.params],
    ['query', schemas.query],
    ['body', schemas.body],
  ];
  return async (ctx, next) => {
    const issues: ValidationIssue[] = [];
    const sources = { params: (ctx as unknown as { params?: unknown }).params ?? {}, query: ctx.query, body: ctx.state.input.body };
    for (const [location, schema] of checks) {
      if (!schema) continue;
      const result = location === 'query' ? parseQuery(schema, ctx.query) : schema.safeParse(sources[location]);
      if (result.success) {
        ctx.state.input[location] = result.data;
        if (location === 'body') issues.push(...unknownKeys(sources.body, result.data, 'body'));
      } else {
        for (const issue of result.error.issues) issues.push({ path: formatPath(location, issue.path), message: issue.message });
      }
    }
    if (issues.length > 0) throw validationError(issues);
    await next();
  };
}
