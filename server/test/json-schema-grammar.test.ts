// The schema check (json-schema.ts) and the grammar cache (grammar-cache.ts) on their own: what is
// refused and why, that the grammar keeps numbers and strings safe, and that compiling happens once.
import { LlamaCompletion, type Llama } from 'node-llama-cpp';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { writeDemoModel } from '../src/engine/demo-model.js';
import { GrammarCache } from '../src/engine/grammar-cache.js';
import { canonicalJson, INTEGER_RANGE, toGrammarSchema, UnsupportedSchemaError, withoutNumberMarkers } from '../src/engine/json-schema.js';
import { planOutput } from '../src/routes/output-plan.js';
import { DEFAULT_CONFIG } from '../src/config.js';
import { startLlama } from '../../bench/lib.js';

function refusal(schema: unknown): UnsupportedSchemaError {
  try {
    toGrammarSchema(schema);
  } catch (error) {
    if (error instanceof UnsupportedSchemaError) return error;
    throw error;
  }
  throw new Error('the schema was accepted');
}

describe('toGrammarSchema', () => {
  it('accepts what zod writes for common schemas', () => {
    const schema = z.toJSONSchema(
      z.object({
        id: z.int(),
        name: z.string().min(1).max(30),
        score: z.number(),
        kind: z.enum(['a', 'b']),
        note: z.string().nullable(),
        tags: z.array(z.string()).max(4),
        pair: z.tuple([z.string(), z.boolean()]),
        shape: z.union([z.object({ r: z.number() }), z.object({ w: z.number(), h: z.number() })]),
        extra: z.record(z.string(), z.number()),
      }),
    );
    expect(() => toGrammarSchema(schema)).not.toThrow();
  });

  it('refuses keywords a grammar cannot enforce, naming the keyword and where it is', () => {
    expect(refusal({ type: 'object', properties: { a: { type: 'string', pattern: 'x' } } })).toMatchObject({ at: 'properties.a.pattern', message: expect.stringMatching(/`pattern`/) });
    expect(refusal({ allOf: [] }).at).toBe('allOf');
    expect(refusal({ type: 'integer', minimum: 2 }).at).toBe('minimum');
    expect(refusal({ type: 'number', multipleOf: 2 }).at).toBe('multipleOf');
    expect(refusal({ type: 'array', uniqueItems: true }).at).toBe('uniqueItems');
    expect(refusal({ type: 'string', format: 'uuid' }).at).toBe('format');
    expect(refusal({ type: 'object', properties: {}, required: ['x'] }).message).toMatch(/`x`/);
    expect(refusal({ type: 'object', properties: { a: { type: 'string' }, b: { type: 'string' } }, maxProperties: 1 }).at).toBe('maxProperties');
    expect(refusal({ $ref: 'https://example.com/schema' }).at).toBe('$ref');
    expect(refusal({ type: 'object', properties: { a: { $defs: {} } } }).at).toBe('properties.a.$defs');
    expect(refusal({ type: 'string', minLength: 10_000 }).at).toBe('minLength');
    // A larger maximum is generated as the limit: shorter output still validates.
    expect(toGrammarSchema({ type: 'string', maxLength: 10_000 })).toEqual({ type: 'string', maxLength: 256 });
    expect(toGrammarSchema({ type: 'array', maxItems: 1_000 })).toEqual({ type: 'array', maxItems: 256 });
    expect(refusal({ enum: [{ a: 1 }] }).at).toBe('enum');
    // zod's z.iso.datetime() adds a pattern the grammar's date-time does not promise to match.
    expect(refusal(z.toJSONSchema(z.iso.datetime())).at).toBe('pattern');
    expect(refusal({ type: 'string', enum: [1] }).at).toBe('enum');
  });

  it('accepts number bounds a grammar can keep, and refuses the others', () => {
    expect(() => toGrammarSchema({ type: 'integer', minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER })).not.toThrow();
    expect(() => toGrammarSchema({ type: 'integer', minimum: -INTEGER_RANGE, maximum: INTEGER_RANGE })).not.toThrow();
    expect(toGrammarSchema({ type: 'integer', minimum: 1, maximum: 5 })).toEqual({ enum: [1, 2, 3, 4, 5] });
    expect(toGrammarSchema({ type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 3.5 })).toEqual({ enum: [1, 2, 3] });
    for (const bounds of [{ minimum: 0 }, { minimum: 1 }, { exclusiveMinimum: 0 }]) expect(() => toGrammarSchema({ type: 'integer', ...bounds })).not.toThrow();
    for (const bounds of [{ minimum: 0 }, { exclusiveMinimum: 0 }, { minimum: 0, maximum: 1 }]) expect(() => toGrammarSchema({ type: 'number', ...bounds })).not.toThrow();
    expect(refusal({ type: 'integer', maximum: INTEGER_RANGE - 1 }).at).toBe('maximum');
    expect(refusal({ type: 'integer', minimum: 5 }).at).toBe('minimum');
    expect(refusal({ type: 'integer', minimum: 0, maximum: 1_000 }).at).toBe('minimum');
    expect(refusal({ type: 'number', minimum: 0, maximum: 100 }).at).toBe('minimum');
    expect(refusal({ type: 'integer', minimum: 3, maximum: 2 }).message).toMatch(/No integer/);
    expect(refusal({ enum: ['__inferno_number_rule__integer>=0'] }).message).toMatch(/reserved/);
  });

  it('allows recursion through objects and arrays, refuses recursion that could never end', () => {
    const tree = { $defs: { node: { type: 'object', properties: { kids: { type: 'array', items: { $ref: '#/$defs/node' }, maxItems: 2 } } } }, $ref: '#/$defs/node' };
    expect(() => toGrammarSchema(tree)).not.toThrow();
    expect(refusal({ $defs: { a: { $ref: '#/$defs/a' } }, $ref: '#/$defs/a' }).message).toMatch(/recursion/);
    expect(refusal({ $defs: { a: { anyOf: [{ $ref: '#/definitions/b' }, { type: 'null' }] } }, definitions: { b: { $ref: '#/$defs/a' } }, type: 'object', properties: { x: { $ref: '#/$defs/a' } } }).message).toMatch(/recursion/);
  });

  it('bounds depth, size and enum values', () => {
    let deep: unknown = { type: 'null' };
    for (let i = 0; i < 40; i++) deep = { type: 'array', items: deep };
    expect(refusal(deep).message).toMatch(/deeper than 32/);
    expect(refusal({ enum: Array.from({ length: 1_001 }, (_, i) => i) }).message).toMatch(/1000/);
    expect(refusal({ type: 'object', properties: Object.fromEntries(Array.from({ length: 2_001 }, (_, i) => [`p${i}`, { type: 'null' }])) }).message).toMatch(/2000 subschemas/);
  });

  it('enforces number rules in forced calls, and describes plain numbers where node-llama-cpp reads the schema itself', () => {
    const parameters = z.toJSONSchema(z.object({ count: z.int().nonnegative(), share: z.number().min(0).max(1) }));
    expect(JSON.stringify(toGrammarSchema(parameters))).toMatch(/__inferno_number_rule__/);
    expect(withoutNumberMarkers(toGrammarSchema(parameters))).toEqual({ type: 'object', properties: { count: { type: 'integer' }, share: { type: 'number' } } });
    const paths = { schema: 's', tools: 't', toolParameters: () => 'p', toolChoice: 'c' };
    const forced = planOutput({ tools: [{ name: 'f', parameters }], toolChoice: { name: 'f' }, chat: true }, DEFAULT_CONFIG.limits, paths);
    expect(JSON.stringify(forced.generation.jsonSchema)).toMatch(/__inferno_number_rule__/);
    expect(JSON.stringify(forced.generation.functions)).not.toMatch(/__inferno_number_rule__/);
    const auto = planOutput({ tools: [{ name: 'f', parameters }], chat: true }, DEFAULT_CONFIG.limits, paths);
    expect(auto.generation.functions?.mode).toBe('auto');
    expect(JSON.stringify(auto.generation.functions)).not.toMatch(/__inferno_number_rule__/);
  });

  it('gives the same cache key for the same schema in any key order', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { f: 1, e: 2 }], c: 2 } })).toBe(canonicalJson({ a: { c: 2, d: [1, { e: 2, f: 1 }] }, b: 1 }));
  });
});

describe('GrammarCache on the demo model', () => {
  let llama: Llama;
  let dir: string;
  let modelPath: string;
  beforeAll(async () => {
    llama = await startLlama();
    dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-grammar-'));
    modelPath = path.join(dir, 'demo-tiny.gguf');
    await writeDemoModel(modelPath, { preset: 'tiny' });
  });
  afterAll(async () => {
    await llama.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('compiles a schema once, finds it again whatever its key order, and drops the least recently used beyond capacity', async () => {
    const cache = new GrammarCache(2);
    const a = await cache.get(llama, toGrammarSchema({ type: 'object', properties: { x: { type: 'string' }, y: { type: 'integer' } } }));
    const again = await cache.get(llama, toGrammarSchema({ properties: { y: { type: 'integer' }, x: { type: 'string' } }, type: 'object' }));
    expect(again).toBe(a);
    expect(cache.stats).toEqual({ size: 1, hits: 1, misses: 1 });
    await cache.get(llama, toGrammarSchema({ type: 'boolean' }));
    await cache.get(llama, toGrammarSchema({ type: 'object', properties: { x: { type: 'string' }, y: { type: 'integer' } } })); // a, used again
    await cache.get(llama, toGrammarSchema({ type: 'null' })); // evicts the boolean one
    expect(cache.stats.size).toBe(2);
    expect(await cache.get(llama, toGrammarSchema({ type: 'object', properties: { x: { type: 'string' }, y: { type: 'integer' } } }))).toBe(a);
    const misses = cache.stats.misses;
    await cache.get(llama, toGrammarSchema({ type: 'boolean' }));
    expect(cache.stats.misses).toBe(misses + 1);
  });

  it('writes safe integers, finite numbers and ASCII strings, whatever the weights', async () => {
    const grammar = await new GrammarCache().get(llama, toGrammarSchema({ type: 'object', properties: { n: { type: 'integer' }, f: { type: 'number' }, s: { type: 'string', maxLength: 40 } } }));
    expect(grammar.grammar).not.toMatch(/\{0,15\}/); // node-llama-cpp's 16-digit rules are replaced
    const model = await llama.loadModel({ modelPath });
    const context = await model.createContext({ contextSize: 512, threads: 1 });
    const sequence = context.getSequence();
    try {
      for (let seed = 1; seed <= 8; seed++) {
        await sequence.clearHistory();
        const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
        const text = await completion.generateCompletion('Data:', { grammar, maxTokens: 200, seed, temperature: 1 });
        completion.dispose({ disposeSequence: false });
        expect(text, text).toMatch(/^[\x20-\x7E\n\t]*$/);
        const value = JSON.parse(text) as { n: number; f: number; s: string };
        expect(Number.isSafeInteger(value.n), text).toBe(true);
        expect(Number.isFinite(value.f), text).toBe(true);
        expect(value.s.length).toBeLessThanOrEqual(40);
      }
      const Bounded = z.object({ count: z.int().nonnegative(), id: z.int().positive(), size: z.number().nonnegative(), weight: z.number().positive(), share: z.number().min(0).max(1), stars: z.int().min(1).max(5) });
      const bounded = await new GrammarCache().get(llama, toGrammarSchema(z.toJSONSchema(Bounded)));
      expect(bounded.grammar).not.toMatch(/__inferno_number_rule__/);
      for (let seed = 1; seed <= 8; seed++) {
        await sequence.clearHistory();
        const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
        const text = await completion.generateCompletion('Data:', { grammar: bounded, maxTokens: 200, seed, temperature: 1 });
        completion.dispose({ disposeSequence: false });
        expect(Bounded.safeParse(JSON.parse(text)).success, text).toBe(true);
      }
    } finally {
      await context.dispose();
      await model.dispose();
    }
  });
});
