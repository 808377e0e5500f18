/**
 * JSON Schema 2020-12 validation of values against schemas of the spec, with ajv over the spec
 * document itself (its `$ref`s followed by ajv), independent of the code generated from it.
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { Schema, Spec } from './spec.js';

const SPEC_ID = 'urn:contract:openapi';

export interface SchemaValidator {
  /** The first few problems of `value` against `schema` (a node of the spec), or [] when it holds. */
  problems(schema: Schema, value: unknown): string[];
  /** Like `problems`, with query and path strings coerced first, as a server reads them. */
  parameterProblems(schema: Schema, value: string): string[];
  valid(schema: Schema, value: unknown): boolean;
}

export function createValidator(spec: Spec): SchemaValidator {
  const make = (coerceTypes: boolean) => {
    // strict off: OpenAPI's own keywords (`example`, `discriminator`, `x-*`) sit inside its schemas.
    const ajv = new Ajv2020({ strict: false, allErrors: true, coerceTypes, validateFormats: true });
    addFormats.default(ajv);
    for (const format of ['binary', 'byte', 'int32', 'int64', 'float', 'double', 'password']) ajv.addFormat(format, true);
    // The whole document, under an id, so that every `#/components/...` reference resolves.
    ajv.addSchema(spec.document, SPEC_ID, undefined, false);
    return ajv;
  };
  const plain = make(false);
  const coercing = make(true);
  const compiled = new WeakMap<object, ValidateFunction>();
  const compiledCoercing = new WeakMap<object, ValidateFunction>();

  const compile = (schema: Schema): ValidateFunction => {
    if (typeof schema === 'boolean') return plain.compile(schema);
    let fn = compiled.get(schema);
    if (!fn) {
      fn = plain.compile(rebase(schema));
      compiled.set(schema, fn);
    }
    return fn;
  };
  const run = (fn: ValidateFunction, value: unknown) => (fn(value) ? [] : describe(fn.errors ?? []));
  return {
    problems: (schema, value) => run(compile(schema), value),
    parameterProblems: (schema, value) => {
      // Coercion rewrites its input in place: validate a holder, so the caller's string stays a string.
      let fn = compiledCoercing.get(schema as object);
      if (!fn) {
        fn = coercing.compile(rebase({ type: 'object', properties: { value: schema } }));
        compiledCoercing.set(schema as object, fn);
      }
      return run(fn, { value });
    },
    valid: (schema, value) => compile(schema)(value) === true,
  };
}

/** A copy of a schema node whose local `$ref`s point into the document added under SPEC_ID. */
function rebase(node: any): any {
  if (Array.isArray(node)) return node.map(rebase);
  if (!node || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    out[key] = key === '$ref' && typeof value === 'string' && value.startsWith('#') ? SPEC_ID + value : rebase(value);
  }
  return out;
}

function describe(errors: ErrorObject[]): string[] {
  // oneOf failures list every branch's complaints; the first few tell the story.
  return errors.slice(0, 4).map((e) => {
    const where = e.instancePath || '/';
    const extra = e.keyword === 'additionalProperties' ? ` (${(e.params as { additionalProperty: string }).additionalProperty})` : e.keyword === 'enum' ? ` (${JSON.stringify((e.params as { allowedValues: unknown }).allowedValues)})` : '';
    return `${where} ${e.message ?? e.keyword}${extra}`;
  });
}
