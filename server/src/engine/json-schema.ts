import type { GbnfJsonSchema } from 'node-llama-cpp';

/**
 * Turns a client's JSON Schema into the subset node-llama-cpp (3.21.1) compiles into a grammar, or
 * refuses it. The grammar then guarantees the output: every value it lets the model write
 * validates against the client's schema. So a keyword the grammar cannot enforce (`pattern`,
 * `allOf`, a tight `minimum`, ...) is refused, never dropped.
 *
 * Supported: `type` (one or a list), `enum`, `const`, `anyOf`/`oneOf` (a value is generated for one
 * branch), `properties`, `required`, `additionalProperties`, `minProperties`, `maxProperties`,
 * `propertyNames` that allows any string, `items` (or `false` after `prefixItems`), `prefixItems`,
 * `minItems`, `maxItems`, `minLength`, `maxLength`, `format` (`date`,
 * `time`, `date-time`), `$ref` to `#/$defs/...` or `#/definitions/...` (recursion included, when
 * it passes through an object or array), number bounds where a grammar can keep them (see
 * `#number`; zod's `z.int()` bounds included), and annotations (`title`, `description`,
 * `default`, `examples`, `$schema`, `$id`, `$comment`, `deprecated`, `readOnly`, `writeOnly`).
 *
 * The grammar writes every listed property (so `required` always holds) and no property beyond
 * them unless `additionalProperties` allows more.
 */

/** Bounds that keep a hostile schema from costing more than a moment to check and compile. */
export const SCHEMA_LIMITS = {
  /** Nesting of schemas inside schemas. */
  maxDepth: 32,
  /** Schemas in all, definitions included. */
  maxNodes: 2_000,
  /** `enum` and `const` values in all. */
  maxEnumValues: 1_000,
  /** The largest `minLength`, `minItems`, `minProperties`, `maxProperties`; larger `maxLength`/`maxItems` are generated as this. */
  maxRepetition: 256,
} as const;

/** The range the integer grammar writes: at most 15 digits, no exponent, so always a safe integer. */
export const INTEGER_RANGE = 999_999_999_999_999;
/** The range of the number grammar: 15 digits, 15 decimals, an exponent of at most 2 digits. */
export const NUMBER_RANGE = 1e115;

/**
 * Placeholders for number rules node-llama-cpp has no schema for: written as `const` strings, whose
 * literal the grammar cache replaces with the rule (grammar-cache.ts). No client value may use them.
 */
export const NUMBER_RULE_MARKER_PREFIX = '__inferno_number_rule__';
export const NUMBER_RULE_MARKERS = {
  nonNegativeInteger: `${NUMBER_RULE_MARKER_PREFIX}integer>=0`,
  positiveInteger: `${NUMBER_RULE_MARKER_PREFIX}integer>=1`,
  nonNegativeNumber: `${NUMBER_RULE_MARKER_PREFIX}number>=0`,
  positiveNumber: `${NUMBER_RULE_MARKER_PREFIX}number>0`,
  unitInterval: `${NUMBER_RULE_MARKER_PREFIX}number0..1`,
} as const;

/** A schema the grammar cannot enforce, with where and which keyword. */
export class UnsupportedSchemaError extends Error {
  override name = 'UnsupportedSchemaError';
  constructor(
    /** JSON-pointer-like path inside the schema, e.g. `properties.age`. */
    readonly at: string,
    message: string,
  ) {
    super(at ? `${message} (at ${at})` : message);
  }
}

const ANNOTATIONS = new Set(['title', 'description', 'default', 'examples', '$schema', '$id', '$comment', 'deprecated', 'readOnly', 'writeOnly']);
const TYPES = ['string', 'number', 'integer', 'boolean', 'null', 'object', 'array'] as const;
type JsonType = (typeof TYPES)[number];
const KEYWORDS_OF: Record<JsonType, readonly string[]> = {
  string: ['minLength', 'maxLength', 'format'],
  number: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'],
  integer: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'],
  boolean: [],
  null: [],
  object: ['properties', 'required', 'additionalProperties', 'minProperties', 'maxProperties', 'propertyNames'],
  array: ['items', 'prefixItems', 'minItems', 'maxItems'],
};
const TYPED_KEYWORDS = new Set(Object.values(KEYWORDS_OF).flat());
const FORMATS = new Set(['date', 'time', 'date-time']);

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Node = Record<string, unknown>;

const isNode = (value: unknown): value is Node => typeof value === 'object' && value !== null && !Array.isArray(value);
const jsonTypeOf = (value: unknown): JsonType =>
  value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value === 'number' ? (Number.isInteger(value) ? 'integer' : 'number') : (typeof value as JsonType);

/** Checks `schema` and returns it in node-llama-cpp's terms, or throws UnsupportedSchemaError. */
export function toGrammarSchema(schema: unknown): GbnfJsonSchema {
  return new SchemaTranslator(schema).translate();
}

class SchemaTranslator {
  #nodes = 0;
  #enumValues = 0;
  readonly #defs: Record<string, unknown>;
  readonly #translatedDefs: Record<string, GbnfJsonSchema> = {};
  /** Per definition, the definitions it reaches without passing through an object or an array. */
  readonly #directRefs = new Map<string, Set<string>>();

  constructor(private readonly root: unknown) {
    if (!isNode(root)) throw new UnsupportedSchemaError('', 'A schema must be a JSON object');
    const defs = { ...(isNode(root.definitions) ? root.definitions : {}), ...(isNode(root.$defs) ? root.$defs : {}) };
    for (const key of ['$defs', 'definitions'] as const) {
      if (key in root && !isNode(root[key])) throw new UnsupportedSchemaError(key, `\`${key}\` must be an object of schemas`);
    }
    this.#defs = defs;
  }

  translate(): GbnfJsonSchema {
    const { $defs: _defs, definitions: _definitions, ...rest } = this.root as Node;
    const direct = new Set<string>();
    const translated = this.#node(rest, '', 0, direct);
    for (const [name, def] of Object.entries(this.#defs)) {
      const defDirect = new Set<string>();
      this.#translatedDefs[name] = this.#node(def, `$defs.${name}`, 1, defDirect);
      this.#directRefs.set(name, defDirect);
    }
    this.#refuseEmptyRecursion();
    if (Object.keys(this.#translatedDefs).length === 0) return translated;
    // node-llama-cpp resolves `$ref` against the `$defs` of enclosing object, array and union
    // schemas; any other root (a bare reference) is wrapped in a union of one to hold them.
    const holdsDefs = 'oneOf' in translated || ('type' in translated && (translated.type === 'object' || translated.type === 'array'));
    return (holdsDefs ? { ...translated, $defs: this.#translatedDefs } : { oneOf: [translated], $defs: this.#translatedDefs }) as GbnfJsonSchema;
  }

  /** A definition that reaches itself through references and unions alone could never end. */
  #refuseEmptyRecursion(): void {
    const visiting = new Set<string>();
    const done = new Set<string>();
    const visit = (name: string) => {
      if (done.has(name)) return;
      if (visiting.has(name)) throw new UnsupportedSchemaError(`$defs.${name}`, `\`$ref\` recursion that never passes through an object or an array`);
      visiting.add(name);
      for (const next of this.#directRefs.get(name) ?? []) visit(next);
      visiting.delete(name);
      done.add(name);
    };
    for (const name of this.#directRefs.keys()) visit(name);
  }

  #count(at: string, depth: number): void {
    if (++this.#nodes > SCHEMA_LIMITS.maxNodes) throw new UnsupportedSchemaError(at, `The schema has more than ${SCHEMA_LIMITS.maxNodes} subschemas`);
    if (depth > SCHEMA_LIMITS.maxDepth) throw new UnsupportedSchemaError(at, `The schema nests deeper than ${SCHEMA_LIMITS.maxDepth} levels`);
  }

  /** `direct` collects the definitions this node reaches without an object or array in between. */
  #node(schema: unknown, at: string, depth: number, direct: Set<string>): GbnfJsonSchema {
    this.#count(at, depth);
    if (schema === true) return this.#any();
    if (!isNode(schema)) throw new UnsupportedSchemaError(at, 'A subschema must be a JSON object (or `true`)');
    const here = (key: string) => (at ? `${at}.${key}` : key);
    for (const key of Object.keys(schema)) {
      if (ANNOTATIONS.has(key) || TYPED_KEYWORDS.has(key) || ['type', 'enum', 'const', 'anyOf', 'oneOf', '$ref'].includes(key)) continue;
      if (key === '$defs' || key === 'definitions') throw new UnsupportedSchemaError(here(key), `\`${key}\` is supported at the root of the schema only`);
      throw new UnsupportedSchemaError(here(key), `The keyword \`${key}\` is not supported`);
    }
    const description = typeof schema.description === 'string' ? { description: schema.description } : {};
    const constraining = Object.keys(schema).filter((key) => !ANNOTATIONS.has(key));

    if ('$ref' in schema) {
      const others = constraining.filter((key) => key !== '$ref');
      if (others.length) throw new UnsupportedSchemaError(here(others[0]!), `\`${others[0]}\` beside \`$ref\` is not supported`);
      const ref = schema.$ref;
      const match = typeof ref === 'string' ? /^#\/(?:\$defs|definitions)\/([^/~]+)$/.exec(ref) : null;
      if (!match) throw new UnsupportedSchemaError(here('$ref'), '`$ref` must point to `#/$defs/<name>` (or `#/definitions/<name>`)');
      const name = match[1]!;
      if (!(name in this.#defs)) throw new UnsupportedSchemaError(here('$ref'), `\`$ref\` points to \`${name}\`, which is not defined`);
      direct.add(name);
      return { $ref: `#/$defs/${name}`, ...description } as GbnfJsonSchema;
    }

    for (const union of ['anyOf', 'oneOf'] as const) {
      if (!(union in schema)) continue;
      const others = constraining.filter((key) => key !== union);
      if (others.length) throw new UnsupportedSchemaError(here(others[0]!), `\`${others[0]}\` beside \`${union}\` is not supported`);
      const branches = schema[union];
      if (!Array.isArray(branches) || branches.length === 0) throw new UnsupportedSchemaError(here(union), `\`${union}\` must be a non-empty list of schemas`);
      return { oneOf: branches.map((branch, i) => this.#node(branch, here(`${union}[${i}]`), depth + 1, direct)), ...description };
    }

    const types = this.#types(schema, here('type'));
    if ('const' in schema || 'enum' in schema) {
      const values = 'const' in schema ? [schema.const] : schema.enum;
      const key = 'const' in schema ? 'const' : 'enum';
      if (!Array.isArray(values) || values.length === 0) throw new UnsupportedSchemaError(here(key), '`enum` must be a non-empty list');
      this.#enumValues += values.length;
      if (this.#enumValues > SCHEMA_LIMITS.maxEnumValues) throw new UnsupportedSchemaError(here(key), `The schema has more than ${SCHEMA_LIMITS.maxEnumValues} \`enum\`/\`const\` values`);
      for (const value of values) {
        if (typeof value === 'object' && value !== null) throw new UnsupportedSchemaError(here(key), `\`${key}\` values must be strings, numbers, booleans or null`);
        if (typeof value === 'string' && value.startsWith(NUMBER_RULE_MARKER_PREFIX)) throw new UnsupportedSchemaError(here(key), `\`${key}\` values starting with ${NUMBER_RULE_MARKER_PREFIX} are reserved`);
        const type = jsonTypeOf(value);
        if (types && !types.includes(type) && !(type === 'integer' && types.includes('number'))) {
          throw new UnsupportedSchemaError(here(key), `The \`${key}\` value ${JSON.stringify(value)} is not of the schema's \`type\``);
        }
      }
      return key === 'const' ? { const: values[0] as string, ...description } : { enum: values as string[], ...description };
    }

    const inferred = types ?? this.#inferTypes(schema);
    const variants = inferred.map((type) => this.#typed(type, schema, at, depth));
    return variants.length === 1 ? { ...variants[0]!, ...description } as GbnfJsonSchema : { oneOf: variants, ...description };
  }

  #types(schema: Node, at: string): JsonType[] | undefined {
    if (!('type' in schema)) return undefined;
    const list = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (list.length === 0) throw new UnsupportedSchemaError(at, '`type` must not be an empty list');
    for (const type of list) {
      if (!TYPES.includes(type as JsonType)) throw new UnsupportedSchemaError(at, `Unknown \`type\` ${JSON.stringify(type)}`);
    }
    return [...new Set(list as JsonType[])];
  }

  /** Without `type`: the type its keywords describe, or any JSON value. */
  #inferTypes(schema: Node): JsonType[] {
    const hinted = TYPES.filter((type) => KEYWORDS_OF[type].some((key) => key in schema) && type !== 'integer');
    return hinted.length > 0 ? hinted : ['string', 'number', 'boolean', 'null', 'object', 'array'];
  }

  #any(): GbnfJsonSchema {
    return { oneOf: [{ type: ['string', 'number', 'boolean', 'null'] }, { type: 'object', additionalProperties: true }, { type: 'array' }] };
  }

  /**
   * A length or count bound. `maxLength` and `maxItems` above the limit are generated as the limit:
   * shorter output still validates. Any other bound above it is refused.
   */
  #count01(schema: Node, key: string, at: string): number | undefined {
    if (!(key in schema)) return undefined;
    const value = schema[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new UnsupportedSchemaError(at, `\`${key}\` must be a non-negative integer`);
    if (value <= SCHEMA_LIMITS.maxRepetition) return value;
    if (key === 'maxLength' || key === 'maxItems') return SCHEMA_LIMITS.maxRepetition;
    throw new UnsupportedSchemaError(at, `\`${key}\` above ${SCHEMA_LIMITS.maxRepetition} is not supported`);
  }

  /**
   * A number within its bounds. Bounds the number grammar already keeps are accepted as they are;
   * a small integer range becomes an `enum`; `>= 0`, `>= 1` (integers), `>= 0`, `> 0` and `[0, 1]`
   * (numbers) get grammar rules of their own (NUMBER_RULE_MARKERS); other bounds are refused.
   */
  #number(type: 'number' | 'integer', schema: Node, here: (key: string) => string): GbnfJsonSchema {
    const range = type === 'integer' ? INTEGER_RANGE : NUMBER_RANGE;
    let lower = -Infinity;
    let upper = Infinity;
    let lowerExclusive = false;
    let upperExclusive = false;
    for (const key of ['minimum', 'exclusiveMinimum', 'maximum', 'exclusiveMaximum']) {
      if (!(key in schema)) continue;
      const value = schema[key];
      if (typeof value !== 'number' || !Number.isFinite(value)) throw new UnsupportedSchemaError(here(key), `\`${key}\` must be a number`);
      const exclusive = key.startsWith('exclusive');
      if (key.endsWith('inimum') && (value > lower || (value === lower && exclusive))) [lower, lowerExclusive] = [value, exclusive];
      if (key.endsWith('aximum') && (value < upper || (value === upper && exclusive))) [upper, upperExclusive] = [value, exclusive];
    }
    const lowImplied = lowerExclusive ? lower < -range : lower <= -range;
    const highImplied = upperExclusive ? upper > range : upper >= range;
    if (lowImplied && highImplied) return { type };
    const refuse = (): never => {
      const key = lowImplied ? (upperExclusive ? 'exclusiveMaximum' : 'maximum') : lowerExclusive ? 'exclusiveMinimum' : 'minimum';
      throw new UnsupportedSchemaError(
        here(key),
        `This \`${key}\` is not supported: ${type === 'integer' ? 'integers take ranges of up to 256 values, >= 0 or >= 1' : 'numbers take >= 0, > 0 or 0 to 1'} (or bounds beyond ±${range})`,
      );
    };
    if (type === 'integer') {
      const low = lowImplied ? -Infinity : lowerExclusive ? Math.floor(lower) + 1 : Math.ceil(lower);
      const high = highImplied ? Infinity : upperExclusive ? Math.ceil(upper) - 1 : Math.floor(upper);
      if (low > high) throw new UnsupportedSchemaError(here('minimum'), 'No integer lies within these bounds');
      if (Number.isFinite(low) && Number.isFinite(high) && high - low < 256) {
        this.#enumValues += high - low + 1;
        if (this.#enumValues > SCHEMA_LIMITS.maxEnumValues) throw new UnsupportedSchemaError(here('maximum'), `The schema has more than ${SCHEMA_LIMITS.maxEnumValues} \`enum\`/\`const\` values`);
        return { enum: Array.from({ length: high - low + 1 }, (_, i) => low + i) };
      }
      if (highImplied && (low === 0 || low === 1)) return { const: low === 0 ? NUMBER_RULE_MARKERS.nonNegativeInteger : NUMBER_RULE_MARKERS.positiveInteger };
      return refuse();
    }
    if (highImplied && lower === 0) return { const: lowerExclusive ? NUMBER_RULE_MARKERS.positiveNumber : NUMBER_RULE_MARKERS.nonNegativeNumber };
    if (lower === 0 && !lowerExclusive && upper === 1 && !upperExclusive) return { const: NUMBER_RULE_MARKERS.unitInterval };
    return refuse();
  }

  /** The part of `schema` that applies to values of one type. */
  #typed(type: JsonType, schema: Node, at: string, depth: number): GbnfJsonSchema {
    const here = (key: string) => (at ? `${at}.${key}` : key);
    const noDirect = new Set<string>(); // below an object or an array, recursion is productive
    switch (type) {
      case 'string': {
        const minLength = this.#count01(schema, 'minLength', here('minLength'));
        const maxLength = this.#count01(schema, 'maxLength', here('maxLength'));
        if (minLength !== undefined && maxLength !== undefined && maxLength < minLength) throw new UnsupportedSchemaError(here('maxLength'), '`maxLength` is below `minLength`');
        if ('format' in schema) {
          if (typeof schema.format !== 'string' || !FORMATS.has(schema.format)) {
            throw new UnsupportedSchemaError(here('format'), `\`format\` ${JSON.stringify(schema.format)} is not supported (only ${[...FORMATS].join(', ')})`);
          }
          if (minLength !== undefined || maxLength !== undefined) throw new UnsupportedSchemaError(here('format'), '`format` together with `minLength`/`maxLength` is not supported');
          return { type: 'string', format: schema.format as 'date' };
        }
        return { type: 'string', ...(minLength !== undefined && { minLength }), ...(maxLength !== undefined && { maxLength }) };
      }
      case 'number':
      case 'integer':
        return this.#number(type, schema, here);
      case 'boolean':
      case 'null':
        return { type };
      case 'object': {
        const properties: Record<string, GbnfJsonSchema> = {};
        if ('properties' in schema) {
          if (!isNode(schema.properties)) throw new UnsupportedSchemaError(here('properties'), '`properties` must be an object of schemas');
          for (const [name, property] of Object.entries(schema.properties)) {
            properties[name] = this.#node(property, here(`properties.${name}`), depth + 1, noDirect);
          }
        }
        if ('required' in schema) {
          if (!Array.isArray(schema.required) || schema.required.some((name) => typeof name !== 'string')) {
            throw new UnsupportedSchemaError(here('required'), '`required` must be a list of property names');
          }
          const missing = (schema.required as string[]).find((name) => !(name in properties));
          if (missing !== undefined) throw new UnsupportedSchemaError(here('required'), `\`required\` names \`${missing}\`, which is not in \`properties\``);
        }
        // Names are strings anyway: only a `propertyNames` that allows every string is enforceable (zod's records write one).
        if ('propertyNames' in schema) {
          const names = schema.propertyNames;
          const loose = names === true || (isNode(names) && Object.keys(names).every((key) => ANNOTATIONS.has(key) || (key === 'type' && names.type === 'string')));
          if (!loose) throw new UnsupportedSchemaError(here('propertyNames'), '`propertyNames` other than `{"type": "string"}` is not supported');
        }
        const count = Object.keys(properties).length;
        let additionalProperties: boolean | GbnfJsonSchema | undefined;
        if ('additionalProperties' in schema && schema.additionalProperties !== false) {
          additionalProperties = schema.additionalProperties === true ? true : this.#node(schema.additionalProperties, here('additionalProperties'), depth + 1, noDirect);
        }
        const minProperties = this.#count01(schema, 'minProperties', here('minProperties'));
        const maxProperties = this.#count01(schema, 'maxProperties', here('maxProperties'));
        if (maxProperties !== undefined && maxProperties < count) throw new UnsupportedSchemaError(here('maxProperties'), '`maxProperties` below the number of `properties` is not supported (every property is written)');
        if (minProperties !== undefined && minProperties > count && !additionalProperties) throw new UnsupportedSchemaError(here('minProperties'), '`minProperties` above the number of `properties` needs `additionalProperties`');
        if (minProperties !== undefined && maxProperties !== undefined && maxProperties < minProperties) throw new UnsupportedSchemaError(here('maxProperties'), '`maxProperties` is below `minProperties`');
        return {
          type: 'object',
          properties,
          ...(additionalProperties !== undefined && { additionalProperties }),
          ...(minProperties !== undefined && minProperties > count && { minProperties }),
          ...(maxProperties !== undefined && additionalProperties && { maxProperties }),
        } as GbnfJsonSchema;
      }
      case 'array': {
        if ('items' in schema && Array.isArray(schema.items)) throw new UnsupportedSchemaError(here('items'), '`items` as a list is not supported (use `prefixItems`)');
        // `items: false` (as zod writes for tuples): nothing beyond `prefixItems`.
        const closed = schema.items === false;
        const items = 'items' in schema && !closed ? this.#node(schema.items, here('items'), depth + 1, noDirect) : undefined;
        let prefixItems: GbnfJsonSchema[] | undefined;
        if ('prefixItems' in schema) {
          if (!Array.isArray(schema.prefixItems)) throw new UnsupportedSchemaError(here('prefixItems'), '`prefixItems` must be a list of schemas');
          prefixItems = schema.prefixItems.map((item, i) => this.#node(item, here(`prefixItems[${i}]`), depth + 1, noDirect));
        }
        const minItems = this.#count01(schema, 'minItems', here('minItems'));
        const maxItems = closed ? Math.min(prefixItems?.length ?? 0, this.#count01(schema, 'maxItems', here('maxItems')) ?? Infinity) : this.#count01(schema, 'maxItems', here('maxItems'));
        if (minItems !== undefined && maxItems !== undefined && maxItems < minItems) throw new UnsupportedSchemaError(here('maxItems'), '`maxItems` is below `minItems`');
        if (prefixItems && maxItems !== undefined && maxItems < prefixItems.length) throw new UnsupportedSchemaError(here('maxItems'), '`maxItems` below the number of `prefixItems` is not supported');
        return {
          type: 'array',
          ...(items && { items }),
          ...(prefixItems && { prefixItems }),
          ...(minItems !== undefined && { minItems }),
          ...(maxItems !== undefined && { maxItems }),
        } as GbnfJsonSchema;
      }
    }
  }
}

/**
 * The schema with the number markers back as plain numbers: for where node-llama-cpp reads a schema
 * itself (the functions it describes in the prompt, and `auto` function calling, whose grammar it
 * builds on its own and which so enforces the structure but not these bounds).
 */
export function withoutNumberMarkers(schema: GbnfJsonSchema): GbnfJsonSchema {
  const strip = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(strip);
    if (!isNode(value)) return value;
    if (typeof value.const === 'string' && value.const.startsWith(NUMBER_RULE_MARKER_PREFIX)) {
      return { type: value.const.includes('integer') ? 'integer' : 'number', ...(value.description !== undefined && { description: value.description }) };
    }
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, strip(inner)]));
  };
  return strip(schema) as GbnfJsonSchema;
}

/** JSON with object keys sorted: the same schema always gives the same text (a cache key). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value as Json));
}

function sortKeys(value: Json): Json {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, sortKeys(value[key]!)]));
}
