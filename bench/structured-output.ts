/**
 * Structured output: what a grammar costs.
 *
 *   npx tsx bench/structured-output.ts [--presets tiny,small] [--repeats 7] [--tokens 160]
 *
 * (a) decode tokens/s of a json_schema-constrained generation against the same request
 *     unconstrained, per demo model, through the server (a child process; `timings` of the native
 *     API, response cache off); runs alternate, medians reported, ratio constrained/unconstrained;
 * (b) a request with a schema the server has not seen (compiled) against the same request again
 *     (the compiled grammar from the cache), max_tokens 1, medians over fresh schemas;
 * (c) compiling the grammar alone (toGrammarSchema + GrammarCache.get in this process): first
 *     time against a cache hit;
 * (d) the grammar's cost alone, in this process on raw node-llama-cpp: the same number of tokens
 *     decoded with the grammar and without it (the end of turn suppressed, so neither stops early),
 *     runs alternating, medians, ratio.
 */
import path from 'node:path';
import { LlamaCompletion, TokenBias, type LlamaGrammar, type LlamaContextSequence } from 'node-llama-cpp';
import { toGrammarSchema } from '../server/src/engine/json-schema.js';
import { GrammarCache } from '../server/src/engine/grammar-cache.js';
import { writeDemoModel, type DemoPresetName } from '../server/src/engine/demo-model.js';
import { fmt, machineLine, median, parseFlags, startChildServer, startLlama, table, tempDir, type BenchServer } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const presets = (flags.get('presets') ?? 'tiny,small').split(',') as DemoPresetName[];
const repeats = Number(flags.get('repeats') ?? 7);
const tokens = Number(flags.get('tokens') ?? 160);
const log = (line = '') => process.stdout.write(line + '\n');

// Long enough output that the rate is measured over many tokens; bounded so that it always ends.
const SCHEMA = {
  type: 'object',
  properties: {
    title: { type: 'string', maxLength: 60 },
    year: { type: 'integer' },
    rating: { type: 'number' },
    genre: { enum: ['drama', 'comedy', 'horror', 'documentary'] },
    cast: { type: 'array', items: { type: 'object', properties: { name: { type: 'string', maxLength: 40 }, lead: { type: 'boolean' } } }, minItems: 4, maxItems: 4 },
    summary: { type: 'string', maxLength: 200 },
  },
  required: ['title', 'year', 'rating', 'genre', 'cast', 'summary'],
};
const messages = [{ role: 'user', content: 'Describe a film as JSON.' }];

interface Timed {
  tps: number;
  tokens: number;
  totalMs: number;
  clientMs: number;
}

async function infer(server: BenchServer, body: Record<string, unknown>): Promise<Timed> {
  const started = performance.now();
  const res = await fetch(`${server.url}/api/v1/inference`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const answer = (await res.json()) as { usage: { completion_tokens: number }; timings: { tokens_per_second: number; total_ms: number }; text: string };
  if (res.status !== 200) throw new Error(`inference answered ${res.status}: ${JSON.stringify(answer)}`);
  return { tps: answer.timings.tokens_per_second, tokens: answer.usage.completion_tokens, totalMs: answer.timings.total_ms, clientMs: performance.now() - started };
}

/** Decodes up to `maxTokens` after a short prompt; tokens/s from the first token to the last. */
async function decode(sequence: LlamaContextSequence, grammar: LlamaGrammar | undefined, tokenBias: TokenBias | undefined, seed: number, maxTokens = tokens) {
  await sequence.clearHistory();
  const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
  let count = 0;
  let firstAt: number | undefined;
  try {
    await completion.generateCompletion('Describe a film as JSON:', {
      maxTokens,
      temperature: 0.8,
      seed,
      ...(grammar && { grammar }),
      ...(tokenBias && { tokenBias }),
      onToken: (t) => {
        firstAt ??= performance.now();
        count += t.length;
      },
    });
  } finally {
    completion.dispose({ disposeSequence: false });
  }
  const ms = performance.now() - (firstAt ?? performance.now());
  return { tokens: count, tps: count > 1 && ms > 0 ? ((count - 1) * 1000) / ms : Number.NaN };
}

async function main() {
  log(`# structured output: grammar cost (${machineLine()})`);
  const models = tempDir('inferno-bench-models-');
  try {
    for (const preset of presets) await writeDemoModel(path.join(models.dir, `demo-${preset}.gguf`), { preset });
    const server = await startChildServer({ modelsDir: models.dir, settings: { 'cache.enabled': 'false', 'models.max_loaded': presets.length } });
    try {
      const rows: (string | number)[][] = [];
      for (const preset of presets) {
        const model = `demo-${preset}`;
        const base = { model, messages, max_tokens: tokens, temperature: 0.8 };
        await infer(server, { ...base, seed: 0 }); // load and warm up
        await infer(server, { ...base, seed: 0, response_format: { type: 'json_schema', schema: SCHEMA } });
        const free: Timed[] = [];
        const constrained: Timed[] = [];
        for (let i = 1; i <= repeats; i++) {
          free.push(await infer(server, { ...base, seed: i }));
          constrained.push(await infer(server, { ...base, seed: i, response_format: { type: 'json_schema', schema: SCHEMA } }));
        }
        const f = median(free.map((r) => r.tps));
        const c = median(constrained.map((r) => r.tps));
        rows.push([model, fmt(f), fmt(c), fmt(c / f, 2), fmt(median(free.map((r) => r.tokens)), 0), fmt(median(constrained.map((r) => r.tokens)), 0)]);
      }
      log('\n(a) decode tokens/s, json_schema-constrained vs the same request unconstrained (medians)');
      log(table(['model', 'unconstrained tok/s', 'constrained tok/s', 'ratio', 'tokens (free)', 'tokens (json)'], rows));

      const model = `demo-${presets[0]}`;
      const first: number[] = [];
      const cached: number[] = [];
      for (let i = 0; i < repeats; i++) {
        // A description makes the schema new to the server: compiled on this request.
        const schema = { ...SCHEMA, description: `run ${i} ${Date.now()}` };
        const body = { model, messages, max_tokens: 1, seed: 1, response_format: { type: 'json_schema', schema } };
        first.push((await infer(server, body)).clientMs);
        cached.push((await infer(server, body)).clientMs);
      }
      log(`\n(b) one request (max_tokens 1, ${model}), client-side ms: new schema ${fmt(median(first), 2)}, same schema again ${fmt(median(cached), 2)}, ratio ${fmt(median(first) / median(cached), 2)}`);
    } finally {
      await server.stop();
    }
  } finally {
    models.remove();
  }

  const llama = await startLlama();
  const cache = new GrammarCache();
  const compile: number[] = [];
  const hit: number[] = [];
  for (let i = 0; i < repeats * 3; i++) {
    const schema = { ...SCHEMA, description: `compile ${i}` };
    let started = performance.now();
    await cache.get(llama, toGrammarSchema(schema));
    compile.push(performance.now() - started);
    started = performance.now();
    await cache.get(llama, toGrammarSchema(schema));
    hit.push(performance.now() - started);
  }
  log(`(c) check and compile the grammar in-process: first ${fmt(median(compile), 3)} ms, cached ${fmt(median(hit), 3)} ms, ratio ${fmt(median(compile) / median(hit), 1)}`);

  const rows: (string | number)[][] = [];
  const rawModels = tempDir('inferno-bench-models-');
  try {
    for (const preset of presets) {
      const modelPath = path.join(rawModels.dir, `demo-${preset}.gguf`);
      await writeDemoModel(modelPath, { preset });
      const model = await llama.loadModel({ modelPath });
      const context = await model.createContext({ sequences: 1, contextSize: 2048, threads: 1 });
      const sequence = context.getSequence();
      const grammar = await cache.get(llama, toGrammarSchema(SCHEMA));
      const noEnd = new TokenBias(model.tokenizer);
      for (const token of [model.tokens.eos, model.tokens.eot]) if (token !== null) noEnd.set(token, 'never');
      const free: number[] = [];
      const constrained: number[] = [];
      const counts: number[] = [];
      await decode(sequence, undefined, noEnd, 0); // warm-up
      for (let i = 1; i <= repeats; i++) {
        const withGrammar = await decode(sequence, grammar, undefined, i);
        const without = await decode(sequence, undefined, noEnd, i, withGrammar.tokens);
        constrained.push(withGrammar.tps);
        free.push(without.tps);
        counts.push(withGrammar.tokens);
      }
      rows.push([`demo-${preset}`, fmt(median(free)), fmt(median(constrained)), fmt(median(constrained) / median(free), 2), fmt(median(counts), 0)]);
      await context.dispose();
      await model.dispose();
    }
  } finally {
    rawModels.remove();
  }
  log('\n(d) raw node-llama-cpp, the same tokens with and without the grammar (decode tokens/s, medians)');
  log(table(['model', 'without grammar', 'with grammar', 'ratio', 'tokens'], rows));
  await llama.dispose();
}

await main();
