import type { ZodType } from 'zod';
import * as jsonSchemas from '../gen/schemas.gen.js';
import * as zodSchemas from '../gen/zod.gen.js';
import type { ValidationIssue } from '../gen/types.gen.js';
import { MAX_VALIDATION_ISSUES } from './errors.js';

/** The subset of JSON Schema (as the spec writes it) that bounds a request's size and shape. */
interface JsonSchema {
  $ref?: string;
  type?: string | readonly string[];
  allOf?: readonly JsonSchema[];
  oneOf?: readonly JsonSchema[];
  anyOf?: readonly JsonSchema[];
  properties?: Readonly<Record<string, JsonSchema>>;
  additionalProperties?: boolean | JsonSchema;
  maxProperties?: number;
  items?: JsonSchema;
  maxItems?: number;
  uniqueItems?: boolean;
}

const COMPONENTS: Record<string, JsonSchema> = Object.fromEntries(
  Object.entries(jsonSchemas).map(([name, schema]) => [name.replace(/Schema$/, ''), schema as JsonSchema]),
);

// The generated zod schemas drop what zod does not express (closed objects, uniqueItems, property
// counts); the spec's own JSON Schema for each is found by name (zCreateApiKeyRequest and
// CreateApiKeyRequestSchema) and by identity for the route aliases (zCreateApiKeyBody).
const BY_ZOD = new Map<unknown, JsonSchema>();
const componentsByLowerName = new Map(Object.entries(COMPONENTS).map(([name, schema]) => [name.toLowerCase(), schema]));
for (const [name, schema] of Object.entries(zodSchemas)) {
  const component = componentsByLowerName.get(name.replace(/^z/, '').toLowerCase());
  if (component) BY_ZOD.set(schema, component);
}

/** The spec's JSON Schema behind a generated zod schema, when it is a component of the spec. */
export const specSchemaOf = (schema: ZodType): JsonSchema | undefined => BY_ZOD.get(schema);

const REFERENCED = new Map(Object.entries(COMPONENTS).map(([name, schema]) => [`#/components/schemas/${name}`, schema]));
const UNKNOWN: JsonSchema = {};

const resolve = (schema: JsonSchema): JsonSchema => {
  let current = schema;
  // $refs in the spec point at components; a chain of them ends (the spec lints clean).
  while (current.$ref) current = REFERENCED.get(current.$ref) ?? UNKNOWN;
  return current;
};

const jsonType = (value: unknown): string =>
  value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value === 'number' ? (Number.isInteger(value) ? 'integer' : 'number') : typeof value;

const allows = (schema: JsonSchema, type: string): boolean => {
  const declared = resolve(schema).type;
  if (declared === undefined) return true;
  const types = typeof declared === 'string' ? [declared] : declared;
  return types.includes(type) || (type === 'integer' && types.includes('number'));
};

const pathOf = (base: string, key: string | number) => (typeof key === 'number' ? `${base}[${key}]` : `${base}.${key}`);

/**
 * Checks a parsed body against the size and shape bounds of its spec schema: `maxItems`,
 * `maxProperties`, `uniqueItems` and closed objects (`additionalProperties: false`:
 * any key the schema does not list is refused, whatever its name, `__proto__` and `constructor`
 * included). It never looks into an array or object beyond its bound, so the cost is at most
 * linear in what the spec allows, and it stops once `issues` holds MAX_VALIDATION_ISSUES.
 * Everything else (types, enums, lengths, ranges, patterns) is left to the zod schemas.
 */
export interface BoundsReport {
  issues: ValidationIssue[];
  /** A size bound was exceeded: the value is too big to hand to zod. */
  oversized: boolean;
}

export function checkSpecBounds(value: unknown, schema: JsonSchema, path: string, report: BoundsReport): void {
  // Every bound is on an array or an object: a string, number, boolean or null has none to break
  // (most of a body's leaves; walking into them, their paths built, was most of this check's cost).
  if (!isContainer(value)) return;
  const { issues } = report;
  if (issues.length >= MAX_VALIDATION_ISSUES) return;
  const spec = resolve(schema);
  if (spec.allOf) for (const part of spec.allOf) checkSpecBounds(value, part, path, report);
  const alternatives = spec.oneOf ?? spec.anyOf;
  if (alternatives) {
    // The spec's alternatives differ by JSON type; a value of none of them is zod's to report.
    const type = jsonType(value);
    const match = alternatives.find((alternative) => allows(alternative, type));
    if (match) checkSpecBounds(value, match, path, report);
  }

  if (Array.isArray(value)) {
    if (spec.maxItems !== undefined && value.length > spec.maxItems) return note(report, path, `Too many items: at most ${spec.maxItems}`, true);
    if (spec.uniqueItems) {
      const seen = new Map<string, number>();
      value.forEach((item, i) => {
        const key = JSON.stringify(item);
        const first = seen.get(key);
        if (first === undefined) seen.set(key, i);
        else note(report, pathOf(path, i), `Duplicate of ${pathOf(path, first)}: items must be unique`);
      });
    }
    if (spec.items) for (let i = 0; i < value.length && issues.length < MAX_VALIDATION_ISSUES; i++) if (isContainer(value[i])) checkSpecBounds(value[i], spec.items, pathOf(path, i), report);
  } else {
    const keys = Object.keys(value);
    if (spec.maxProperties !== undefined && keys.length > spec.maxProperties) return note(report, path, `Too many fields: at most ${spec.maxProperties}`, true);
    const properties = spec.properties ?? {};
    for (const key of keys) {
      if (issues.length >= MAX_VALIDATION_ISSUES) return;
      const field = Object.hasOwn(properties, key) ? properties[key] : spec.additionalProperties;
      if (field === false) note(report, pathOf(path, key), 'Unknown field');
      else if (typeof field === 'object' && isContainer((value as Record<string, unknown>)[key])) checkSpecBounds((value as Record<string, unknown>)[key], field, pathOf(path, key), report);
    }
  }
}

/** An array or an object: what a size or shape bound can apply to. */
const isContainer = (value: unknown): value is object => value !== null && typeof value === 'object';

function note(report: BoundsReport, path: string, message: string, oversized = false): void {
  if (report.issues.length < MAX_VALIDATION_ISSUES) report.issues.push({ path, message });
  if (oversized) report.oversized = true;
}
