import type { ZodType } from 'zod';
import type { ValidationIssue } from '../gen/types.gen.js';
import type { AppMiddleware } from './context.js';
import { MAX_VALIDATION_ISSUES, validationError } from './errors.js';
import { checkSpecBounds, specSchemaOf, type BoundsReport } from './spec-bounds.js';

export interface RequestSchemas {
  body?: ZodType;
  query?: ZodType;
  params?: ZodType;
}

function formatPath(location: string, path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, part) => (typeof part === 'number' ? `${out}[${part}]` : `${out}.${String(part)}`), location);
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
 * A body's problems: first the spec's size and shape bounds (`checkSpecBounds`: closed objects,
 * item and field counts, unique items); a value beyond a size bound is never handed to zod. Then
 * the generated zod schema (types, lengths, ranges, patterns). At most MAX_VALIDATION_ISSUES are listed.
 */
export function bodyIssues(schema: ZodType, body: unknown): { issues: ValidationIssue[]; data?: unknown } {
  const report: BoundsReport = { issues: [], oversized: false };
  const spec = specSchemaOf(schema);
  if (spec) checkSpecBounds(body, spec, 'body', report);
  if (report.oversized) return { issues: report.issues };
  const result = schema.safeParse(body);
  const zodIssues = result.success ? [] : result.error.issues.slice(0, MAX_VALIDATION_ISSUES);
  const issues = [...report.issues, ...zodIssues.map((issue) => ({ path: formatPath('body', issue.path), message: issue.message }))];
  return issues.length > 0 ? { issues: issues.slice(0, MAX_VALIDATION_ISSUES) } : { issues, data: result.data };
}

/**
 * Validates the request against the schemas generated from openapi.yaml; each bad field is
 * listed in `details` as `{path, message}` (at most MAX_VALIDATION_ISSUES of them).
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
      if (location === 'body') {
        const body = bodyIssues(schema, sources.body);
        if (body.issues.length === 0) ctx.state.input.body = body.data;
        issues.push(...body.issues);
        continue;
      }
      const result = location === 'query' ? parseQuery(schema, ctx.query) : schema.safeParse(sources[location]);
      if (result.success) ctx.state.input[location] = result.data;
      else for (const issue of result.error.issues) issues.push({ path: formatPath(location, issue.path), message: issue.message });
    }
    if (issues.length > 0) throw validationError(issues.slice(0, MAX_VALIDATION_ISSUES));
    await next();
  };
}
