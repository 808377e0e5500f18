import { LlamaGrammar, LlamaText, type GbnfJsonSchema, type Llama } from 'node-llama-cpp';
import { canonicalJson, NUMBER_RULE_MARKERS } from './json-schema.js';

/** The grammar could not be built from a schema llama.cpp's grammar parser refuses (too complex). */
export class GrammarCompileError extends Error {
  override name = 'GrammarCompileError';
}

// Rules of node-llama-cpp's JSON grammar replaced so that every output is valid whatever the weights:
// - numbers: node-llama-cpp allows 16 digits and a 16-digit exponent, so `1e999` (valid JSON that
//   parses to Infinity) and integers past the safe range; these keep numbers finite and integers
//   safe (json-schema.ts states the same ranges);
// - string characters: llama.cpp's grammar matches code points decoded from token bytes without
//   refusing overlong or surrogate encodings, so byte-fallback tokens could write invalid UTF-8
//   inside a string (measured on the demo model). Strings are written in printable ASCII, any
//   other character as a `\u` escape: always valid JSON, and the parsed string is the same.
const SAFE_RULES: Record<string, string> = {
  'integer-number-rule': '"-"? ("0" | [1-9] [0-9]{0,14})',
  'fractional-number-rule': '"-"? ("0" | [1-9] [0-9]{0,14}) ("." [0-9]{1,15})? ([eE] [-+]? [0-9]{1,2})?',
  'string-char-rule': '[\\x20-\\x21\\x23-\\x5B\\x5D-\\x7E] | "\\\\" ["\\\\/bfnrt] | "\\\\u" [0-9a-fA-F]{4}',
};

// The rules behind json-schema.ts's number markers (the grammar has them as string literals).
const DIGITS = '[1-9] [0-9]{0,14}';
const FRACTION_AND_EXPONENT = '("." [0-9]{1,15})? ([eE] [-+]? [0-9]{1,2})?';
const MARKER_RULES: Record<string, string> = {
  [NUMBER_RULE_MARKERS.nonNegativeInteger]: `("0" | ${DIGITS})`,
  [NUMBER_RULE_MARKERS.positiveInteger]: `(${DIGITS})`,
  [NUMBER_RULE_MARKERS.nonNegativeNumber]: `("0" | ${DIGITS}) ${FRACTION_AND_EXPONENT}`,
  [NUMBER_RULE_MARKERS.positiveNumber]: `(${DIGITS} ("." [0-9]{1,15})? | "0." [0-9]{0,14} [1-9]) ([eE] [-+]? [0-9]{1,2})?`,
  [NUMBER_RULE_MARKERS.unitInterval]: '("0" ("." [0-9]{1,15})? | "1" ("." "0"{1,15})?)',
};

function withSafeRules(gbnf: string): string {
  for (const [marker, rule] of Object.entries(MARKER_RULES)) gbnf = gbnf.replaceAll(`"\\"${marker}\\""`, rule);
  return gbnf
    .split('\n')
    .map((line) => {
      const name = /^([a-z-]+) ::= /.exec(line)?.[1];
      return name && name in SAFE_RULES ? `${name} ::= ${SAFE_RULES[name]}` : line;
    })
    .join('\n');
}

/**
 * Compiled grammars by schema, least recently used dropped beyond `capacity`. A grammar is
 * immutable and shared: each generation makes its own evaluation state from it.
 */
export class GrammarCache {
  readonly #entries = new Map<string, LlamaGrammar>();
  #hits = 0;
  #misses = 0;

  constructor(private readonly capacity = 128) {}

  get stats() {
    return { size: this.#entries.size, hits: this.#hits, misses: this.#misses };
  }

  /** The grammar for a schema already checked by `toGrammarSchema`. */
  async get(llama: Llama, schema: GbnfJsonSchema): Promise<LlamaGrammar> {
    const key = canonicalJson(schema);
    const cached = this.#entries.get(key);
    if (cached) {
      this.#hits++;
      this.#entries.delete(key); // re-inserted: most recently used last
      this.#entries.set(key, cached);
      return cached;
    }
    this.#misses++;
    let grammar: LlamaGrammar;
    try {
      const generated = await llama.createGrammarForJsonSchema(schema as never); // its generic types want a literal schema
      grammar = new LlamaGrammar(llama, {
        grammar: withSafeRules(generated.grammar),
        stopGenerationTriggers: [LlamaText(['\n'.repeat(4)])],
        trimWhitespaceSuffix: true,
      });
    } catch (error) {
      throw new GrammarCompileError(`The schema is too complex to compile into a grammar: ${error instanceof Error ? error.message : String(error)}`);
    }
    this.#entries.set(key, grammar);
    if (this.#entries.size > this.capacity) this.#entries.delete(this.#entries.keys().next().value!);
    return grammar;
  }
}
