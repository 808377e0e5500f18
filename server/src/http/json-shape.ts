/**
 * Bounds on the shape of a JSON body, checked on the raw bytes as they stream in, before
 * `JSON.parse` sees them: parsing a hostile body (millions of levels or items) costs seconds and
 * hundreds of MB, refusing it here costs one pass over the bytes. No request body of the API
 * comes near these; the spec's own, tighter bounds are checked after parsing.
 */
export const JSON_LIMITS = {
  /** Arrays and objects nested in each other. */
  maxDepth: 64,
  /** Items of one array or members of one object. */
  maxEntries: 10_000,
  /** Values in the whole body (each array, object and item counted once, roughly). */
  maxValues: 262_144,
} as const;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;
const COMMA = 0x2c;

/**
 * Tracks nesting and counts entries across chunks; `push` answers why the body is refused, or
 * undefined while it stays within the limits. Malformed JSON is left to the parser.
 */
export class JsonShapeScanner {
  #depth = 0;
  #inString = false;
  #escaped = false;
  #values = 0;
  /** Commas seen at each open level: a container's entries minus one. */
  readonly #commas = new Uint32Array(JSON_LIMITS.maxDepth + 1);

  push(chunk: Uint8Array): string | undefined {
    const { maxDepth, maxEntries, maxValues } = JSON_LIMITS;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!;
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (byte === BACKSLASH) this.#escaped = true;
        else if (byte === QUOTE) this.#inString = false;
        else {
          // Jump to the next quote: long strings cost no per-byte work here. A quote after an odd
          // run of backslashes is escaped (the byte at i is neither, so a run never reaches it).
          const quote = chunk.indexOf(QUOTE, i);
          const end = quote < 0 ? chunk.length : quote;
          let run = 0;
          while (chunk[end - 1 - run] === BACKSLASH) run++;
          if (quote < 0) {
            this.#escaped = run % 2 === 1; // the string goes on in the next chunk
            return undefined;
          }
          if (run % 2 === 0) this.#inString = false;
          i = quote;
        }
        continue;
      }
      if (byte === QUOTE) {
        this.#inString = true;
      } else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) {
        if (++this.#depth > maxDepth) return `The JSON is nested deeper than ${maxDepth} levels`;
        this.#commas[this.#depth] = 0;
        if (++this.#values > maxValues) return `The JSON holds more than ${maxValues} values`;
      } else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) {
        if (this.#depth > 0) this.#depth--;
      } else if (byte === COMMA) {
        if (++this.#commas[this.#depth]! >= maxEntries) return `An array or object in the JSON has more than ${maxEntries} entries`;
        if (++this.#values > maxValues) return `The JSON holds more than ${maxValues} values`;
      }
    }
    return undefined;
  }
}
