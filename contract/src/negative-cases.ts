/**
 * Requests that the spec says are wrong, derived from the schemas at run time: a required field
 * left out, a value of the wrong type, a number out of its range, a string or list over its
 * bounds, a value outside its enum, a field the schema does not allow, and for parameters the
 * same kinds. Every case is confirmed invalid by the validator before it is sent, so a server that
 * accepts it is wrong, not the kit.
 */
import type { SchemaValidator } from './validator.js';
import { mainBranch, objectView, typeOf } from './synthesize.js';
import type { Parameter, Schema, Spec } from './spec.js';

export interface BodyCase {
  label: string;
  body: unknown;
}

export interface ParameterCase {
  label: string;
  parameter: Parameter;
  value: string;
}

const MAX_PER_KIND = 4;
const MAX_BOUND = 1_000_000;
const WRONG_TYPES: unknown[] = [12345, 'contract-wrong-type', true, { contract: 1 }, ['contract'], null];

type Segment = string | number;
const show = (path: Segment[]) => path.reduce<string>((s, p) => (typeof p === 'number' ? `${s}[${p}]` : s ? `${s}.${p}` : p), '') || '(body)';

function setAt(root: unknown, path: Segment[], value: unknown, remove = false): unknown {
  const copy = structuredClone(root) as any;
  let node = copy;
  for (const segment of path.slice(0, -1)) node = node[segment];
  const last = path[path.length - 1]!;
  if (remove) delete node[last];
  else node[last] = value;
  return copy;
}

interface Leaf {
  path: Segment[];
  schema: any;
  value: unknown;
}

/** Every value in `body` (to depth 4, first element of lists), with the schema it must satisfy. */
function leaves(spec: Spec, validator: SchemaValidator, schema: Schema, body: unknown, path: Segment[] = [], out: Leaf[] = []): Leaf[] {
  if (path.length > 4) return out;
  // Of a union, the branch the value takes decides what it is held to.
  let s = spec.resolve(schema) as any;
  const branches = s?.oneOf ?? s?.anyOf;
  if (branches) s = spec.resolve(branches.find((b: Schema) => validator.valid(b, body)) ?? mainBranch(spec, s));
  if (path.length > 0) out.push({ path, schema: s, value: body });
  if (Array.isArray(body) && body.length > 0 && s?.items) leaves(spec, validator, s.items, body[0], [...path, 0], out);
  else if (body && typeof body === 'object' && !Array.isArray(body)) {
    const view = objectView(spec, s);
    for (const [key, value] of Object.entries(body)) {
      const child = view.properties[key];
      if (child) leaves(spec, validator, child, value, [...path, key], out);
    }
  }
  return out;
}

export function bodyCases(spec: Spec, validator: SchemaValidator, schema: Schema, body: unknown): BodyCase[] {
  const kinds: BodyCase[][] = [];
  const view = objectView(spec, schema);
  kinds.push(view.required.filter((k) => body && typeof body === 'object' && k in body).map((k) => ({ label: `required field ${k} missing`, body: setAt(body, [k], undefined, true) })));
  const all = leaves(spec, validator, schema, body);
  kinds.push(
    all.flatMap((leaf) => {
      if (!leaf.value || typeof leaf.value !== 'object' || Array.isArray(leaf.value)) return [];
      const nested = objectView(spec, leaf.schema).required.filter((k) => k in (leaf.value as object));
      return nested.map((k) => ({ label: `required field ${show([...leaf.path, k])} missing`, body: setAt(body, [...leaf.path, k], undefined, true) }));
    }),
  );
  const topLevel = all.filter((l) => l.path.length === 1);
  kinds.push(
    topLevel.flatMap((leaf) => {
      const wrong = WRONG_TYPES.find((c) => kindOf(c) !== kindOf(leaf.value) && !validator.valid(leaf.schema, c));
      return wrong === undefined ? [] : [{ label: `${show(leaf.path)} of the wrong type (${JSON.stringify(wrong)})`, body: setAt(body, leaf.path, wrong) }];
    }),
  );
  const range: BodyCase[] = [];
  const length: BodyCase[] = [];
  const items: BodyCase[] = [];
  const enums: BodyCase[] = [];
  const formats: BodyCase[] = [];
  for (const leaf of all) {
    const s = mainBranch(spec, leaf.schema);
    const where = show(leaf.path);
    const type = typeOf(s);
    if (type === 'integer' || type === 'number') {
      const step = type === 'integer' ? 1 : 0.5;
      if (typeof s.maximum === 'number') range.push({ label: `${where} above its maximum ${s.maximum}`, body: setAt(body, leaf.path, s.maximum + step) });
      if (typeof s.exclusiveMaximum === 'number') range.push({ label: `${where} at its exclusive maximum ${s.exclusiveMaximum}`, body: setAt(body, leaf.path, s.exclusiveMaximum) });
      if (typeof s.minimum === 'number') range.push({ label: `${where} below its minimum ${s.minimum}`, body: setAt(body, leaf.path, s.minimum - step) });
    }
    if (type === 'string' && !s.enum && (s.pattern || s.format) && typeof leaf.value === 'string') {
      const bad = '-contract not valid!';
      if (!validator.valid(leaf.schema, bad)) formats.push({ label: `${where} ${s.format ? `not a valid ${s.format}` : 'not matching its pattern'}`, body: setAt(body, leaf.path, bad) });
    }
    if (type === 'string' && !s.enum) {
      if (typeof s.maxLength === 'number' && s.maxLength < MAX_BOUND) length.push({ label: `${where} longer than maxLength ${s.maxLength}`, body: setAt(body, leaf.path, 'x'.repeat(s.maxLength + 1)) });
      if (typeof s.minLength === 'number' && s.minLength > 0) length.push({ label: `${where} shorter than minLength ${s.minLength}`, body: setAt(body, leaf.path, 'x'.repeat(s.minLength - 1)) });
    }
    if (type === 'array' && Array.isArray(leaf.value)) {
      if (typeof s.maxItems === 'number' && s.maxItems < 100_000 && leaf.value.length > 0) {
        const over = Array.from({ length: s.maxItems + 1 }, (_, i) => (s.uniqueItems ? distinctItem(leaf.value as unknown[], i) : (leaf.value as unknown[])[0]));
        items.push({ label: `${where} with more than maxItems ${s.maxItems} items`, body: setAt(body, leaf.path, over) });
      }
      if (s.uniqueItems === true && leaf.value.length > 0) items.push({ label: `${where} with a duplicate item (uniqueItems)`, body: setAt(body, leaf.path, [leaf.value[0], ...leaf.value]) });
      if (typeof s.minItems === 'number' && s.minItems > 0) items.push({ label: `${where} with fewer than minItems ${s.minItems} items`, body: setAt(body, leaf.path, []) });
    }
    if (Array.isArray(s.enum) && typeof leaf.value === 'string') enums.push({ label: `${where} not one of its enum values`, body: setAt(body, leaf.path, 'contract-not-in-enum') });
  }
  kinds.push(range, length, formats, items, enums);
  if (view.additionalProperties === false) kinds.push([{ label: 'an unknown field (additionalProperties: false)', body: { ...(body as object), contract_unknown_field: 1 } }]);
  // Only what the spec really forbids is sent (a union can make a mutation valid after all).
  return kinds.flatMap((cases) => cases.filter((c) => !validator.valid(schema, c.body)).slice(0, MAX_PER_KIND));
}

function distinctItem(values: unknown[], i: number): unknown {
  const first = values[0];
  return typeof first === 'string' ? `${first}-${i}` : i;
}

const kindOf = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

export function parameterCases(spec: Spec, validator: SchemaValidator, parameters: Parameter[]): ParameterCase[] {
  const out: ParameterCase[] = [];
  for (const parameter of parameters) {
    if (parameter.in !== 'query' && parameter.in !== 'path') continue;
    const s = mainBranch(spec, parameter.schema);
    const type = typeOf(s);
    const candidates: [string, string][] = [];
    if (type === 'integer' || type === 'number') {
      candidates.push(['not a number', 'contract']);
      if (typeof s.maximum === 'number') candidates.push([`above its maximum ${s.maximum}`, String(s.maximum + 1)]);
      if (typeof s.minimum === 'number') candidates.push([`below its minimum ${s.minimum}`, String(s.minimum - 1)]);
    } else if (type === 'boolean') {
      candidates.push(['not a boolean', 'contract']);
    } else if (type === 'string') {
      if (Array.isArray(s.enum)) candidates.push(['not one of its enum values', 'contract-not-in-enum']);
      if (s.format || s.pattern) candidates.push([s.format ? `not a valid ${s.format}` : 'not matching its pattern', '-contract not valid!']);
      if (typeof s.maxLength === 'number' && s.maxLength < 4096) candidates.push([`longer than maxLength ${s.maxLength}`, 'x'.repeat(s.maxLength + 1)]);
    }
    for (const [label, value] of candidates) {
      if (validator.parameterProblems(parameter.schema, value).length > 0) out.push({ label: `${parameter.in} parameter ${parameter.name} ${label}`, parameter, value });
    }
  }
  return out;
}
