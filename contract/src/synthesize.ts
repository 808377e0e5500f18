/**
 * Plausible values built from schemas: the spec's examples first, then the least a schema asks
 * for (required properties, minimum sizes, the first enum value). A few field names get values
 * of the run instead: `model` a model the server lists, `name` and `username` a fresh name with
 * the run's prefix (so nothing created collides with or looks like someone else's), `password`
 * a fresh one.
 */
import { randomUUID } from 'node:crypto';
import type { Schema, Spec } from './spec.js';

export interface SynthesisContext {
  spec: Spec;
  /** A model the server has, for fields named `model`. */
  model?: string;
  /** Returns a fresh name with the run's prefix (`contract-<run>-<n>`). */
  freshName(): string;
}

const NAME_FIELDS = new Set(['name', 'username']);

/** The schema's object view: `allOf` branches merged (properties, required), `$ref`s followed. */
export function objectView(spec: Spec, schema: Schema): { properties: Record<string, Schema>; required: string[]; additionalProperties: unknown; minProperties?: number } {
  const s = spec.resolve(schema) as any;
  const view = { properties: { ...(s?.properties ?? {}) }, required: [...(s?.required ?? [])], additionalProperties: s?.additionalProperties, minProperties: s?.minProperties };
  for (const branch of s?.allOf ?? []) {
    const b = objectView(spec, branch);
    Object.assign(view.properties, b.properties);
    view.required.push(...b.required);
    if (b.additionalProperties === false) view.additionalProperties = false;
    view.minProperties ??= b.minProperties;
  }
  return view;
}

/** The non-null branch of a `oneOf`/`anyOf` or type list, the one a plausible value takes. */
export function mainBranch(spec: Spec, schema: Schema): any {
  let s = spec.resolve(schema) as any;
  for (let i = 0; i < 8 && s && typeof s === 'object'; i++) {
    const branches = s.oneOf ?? s.anyOf;
    if (!branches) break;
    const chosen = branches.map((b: Schema) => spec.resolve(b)).find((b: any) => b?.type !== 'null') ?? branches[0];
    // Keep the outer node's own keywords (descriptions, defaults) out: the branch decides.
    s = chosen;
  }
  return s;
}

export function typeOf(schema: any): string | undefined {
  if (!schema || typeof schema !== 'object') return undefined;
  const t = Array.isArray(schema.type) ? schema.type.find((x: string) => x !== 'null') : schema.type;
  if (t) return t;
  if (schema.properties || schema.allOf) return 'object';
  if (schema.items) return 'array';
  return undefined;
}

/** A value for `schema`; `key` is the property name it is for, when it is one. */
export function synthesize(ctx: SynthesisContext, schema: Schema, key?: string, depth = 0): unknown {
  const { spec } = ctx;
  if (key === 'model' && ctx.model) return ctx.model;
  if (key && NAME_FIELDS.has(key)) return ctx.freshName();
  const raw = spec.resolve(schema) as any;
  if (raw === true || raw === undefined) return 'contract';
  if (key === 'password') return `${ctx.freshName()}-Pw-${randomUUID().slice(0, 8)}`;
  if ('const' in raw) return raw.const;
  if (Array.isArray(raw.examples) && raw.examples.length > 0) return withRunValues(ctx, structuredClone(raw.examples[0]));
  if (raw.example !== undefined) return withRunValues(ctx, structuredClone(raw.example));
  if (raw.allOf) {
    const merged: Record<string, unknown> = {};
    for (const branch of raw.allOf) Object.assign(merged, synthesize(ctx, branch, key, depth + 1) as object);
    return merged;
  }
  const s = mainBranch(spec, raw);
  if (s !== raw) return synthesize(ctx, s, key, depth + 1);
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.default !== undefined && s.enum.includes(s.default) ? s.default : s.enum[0];
  switch (typeOf(s)) {
    case 'object': {
      if (depth > 12) return {};
      const view = objectView(spec, s);
      const keys = [...new Set(view.required)];
      // minProperties without required ones: the first properties, filled the least way.
      for (const name of Object.keys(view.properties)) {
        if (keys.length >= (view.minProperties ?? 0)) break;
        if (!keys.includes(name)) keys.push(name);
      }
      const out: Record<string, unknown> = {};
      for (const name of keys) out[name] = synthesize(ctx, view.properties[name] ?? {}, name, depth + 1);
      // A nested object that asks for nothing still gets its first property, so it says something.
      const first = Object.keys(view.properties)[0];
      if (keys.length === 0 && depth > 0 && first) out[first] = synthesize(ctx, view.properties[first]!, first, depth + 1);
      return out;
    }
    case 'array': {
      const count = Math.max(1, s.minItems ?? 0);
      const items = Array.from({ length: count }, () => synthesize(ctx, s.items ?? {}, undefined, depth + 1));
      return s.uniqueItems ? [...new Map(items.map((v) => [JSON.stringify(v), v])).values()] : items;
    }
    case 'integer':
    case 'number': {
      if (s.default !== undefined) return s.default;
      const min = s.minimum ?? (s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + 1 : undefined);
      const max = s.maximum ?? (s.exclusiveMaximum !== undefined ? s.exclusiveMaximum - 1 : undefined);
      const value = min ?? Math.min(1, max ?? 1);
      return value;
    }
    case 'boolean':
      return s.default ?? false;
    case 'null':
      return null;
    default:
      return synthesizeString(ctx, s);
  }
}

function synthesizeString(ctx: SynthesisContext, s: any): string {
  if (typeof s.default === 'string') return s.default;
  switch (s.format) {
    case 'uuid':
      return randomUUID();
    case 'date-time':
      return new Date().toISOString();
    case 'date':
      return new Date().toISOString().slice(0, 10);
    case 'email':
      return `${ctx.freshName()}@example.com`;
    case 'uri':
      return 'https://example.com/';
  }
  const min = s.minLength ?? 1;
  const max = s.maxLength ?? Math.max(min, 64);
  const candidates = [ctx.freshName(), 'contract', 'a', '1', 'a.b'];
  const pattern = s.pattern ? new RegExp(s.pattern, 'u') : undefined;
  for (const c of candidates) {
    const padded = c.length < min ? c.padEnd(min, 'x') : c.slice(0, max);
    if (!pattern || pattern.test(padded)) return padded;
  }
  return 'x'.repeat(min);
}

/** An example from the spec, with the run's model and fresh names in place of the example's own. */
export function withRunValues(ctx: SynthesisContext, value: any, key?: string): any {
  if (key === 'model' && ctx.model && typeof value === 'string') return ctx.model;
  if (key && NAME_FIELDS.has(key) && typeof value === 'string') return ctx.freshName();
  if (Array.isArray(value)) return value.map((v) => withRunValues(ctx, v));
  if (value && typeof value === 'object') {
    for (const k of Object.keys(value)) value[k] = withRunValues(ctx, value[k], k);
  }
  return value;
}
