// Generates a small, deterministic llama-architecture GGUF model with random weights, so the real llama.cpp
// engine can run in tests, demos and benchmarks without downloading anything. Its text is gibberish by design;
// what matters is that it loads, tokenizes (SentencePiece-style, with byte fallback), speaks ChatML and
// stops by itself now and then.
import { GgmlType, Q8_0_BLOCK_SIZE, gguf, writeGguf, type GgufTensorSpec, type GgufValue } from './gguf-writer.js';

export type DemoPresetName = 'tiny' | 'small';
export type DemoFileType = 'f32' | 'f16' | 'q8_0';

export interface DemoPreset {
  vocabSize: number;
  contextLength: number;
  embeddingLength: number;
  blockCount: number;
  feedForwardLength: number;
  headCount: number;
  headCountKv: number;
  defaultFileType: DemoFileType;
  /**
   * Logit bias of the end-of-turn token, in the units of the other logits. Tuned per vocabulary size so that
   * sampling (temperature ~1, top-k 40, top-p 0.95) ends a reply after some tens of tokens on average.
   */
  eosLogitBias: number;
}

export const DEMO_PRESETS: Readonly<Record<DemoPresetName, Readonly<DemoPreset>>> = {
  // ~0.5M parameters, ~1 MB as F16: loads in milliseconds, for unit tests.
  tiny: {
    vocabSize: 512,
    contextLength: 2048,
    embeddingLength: 128,
    blockCount: 2,
    feedForwardLength: 384,
    headCount: 4,
    headCountKv: 2,
    defaultFileType: 'f16',
    eosLogitBias: 4,
  },
  // ~60M parameters, ~64 MB as Q8_0: a realistic vocabulary and enough compute for benchmarks.
  small: {
    vocabSize: 32000,
    contextLength: 4096,
    embeddingLength: 512,
    blockCount: 8,
    feedForwardLength: 1728,
    headCount: 8,
    headCountKv: 4,
    defaultFileType: 'q8_0',
    eosLogitBias: 7.5,
  },
};

export interface DemoModelOptions {
  preset?: DemoPresetName;
  /** Same seed, same bytes. */
  seed?: number;
  fileType?: DemoFileType;
}

export interface DemoModelResult {
  path: string;
  bytes: number;
  parameters: number;
  preset: DemoPresetName;
}

export const DEFAULT_DEMO_SEED = 42;

// Token ids of the special tokens, fixed by the order buildVocabulary() lays them out in.
export const DEMO_TOKEN = { unknown: 0, bos: 1, endOfText: 2, imStart: 3, imEnd: 4 } as const;
/** The EOS token: ChatML's <|im_end|> (as in Qwen), so chat and plain completion both stop on it; </s> is never produced. */
const END_OF_TURN = DEMO_TOKEN.imEnd;

/** llama.cpp token types (llama_token_type). */
const TokenType = { normal: 1, unknown: 2, control: 3, byte: 6 } as const;

const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const FILE_TYPES: Record<DemoFileType, { tensorType: GgmlType; llamaFtype: number }> = {
  f32: { tensorType: GgmlType.F32, llamaFtype: 0 },
  f16: { tensorType: GgmlType.F16, llamaFtype: 1 },
  q8_0: { tensorType: GgmlType.Q8_0, llamaFtype: 7 },
};

export async function writeDemoModel(path: string, options: DemoModelOptions = {}): Promise<DemoModelResult> {
  const presetName = options.preset ?? 'tiny';
  const preset = DEMO_PRESETS[presetName];
  if (preset === undefined) throw new Error(`unknown demo model preset ${JSON.stringify(presetName)}`);
  const seed = options.seed ?? DEFAULT_DEMO_SEED;
  if (!Number.isSafeInteger(seed)) throw new Error(`demo model seed must be an integer, got ${seed}`);
  const fileType = options.fileType ?? preset.defaultFileType;
  const format = FILE_TYPES[fileType];
  if (format === undefined) throw new Error(`unknown demo model file type ${JSON.stringify(fileType)}`);

  const vocabulary = buildVocabulary(preset.vocabSize);
  const metadata = buildMetadata(presetName, preset, format.llamaFtype, vocabulary);
  const tensors = buildTensors(preset, vocabulary, format.tensorType, seed);
  const { bytes } = await writeGguf(path, metadata, tensors);
  const parameters = tensors.reduce((sum, t) => sum + t.dims.reduce((a, b) => a * b, 1), 0);
  return { path, bytes, parameters, preset: presetName };
}

// ---------------------------------------------------------------------------------------------------------------
// Vocabulary

interface Vocabulary {
  tokens: string[];
  scores: number[];
  types: number[];
}

/** SentencePiece's visible space: a leading "▁" marks a piece that starts a word. */
const SPACE = '\u2581';

const COMMON_WORDS = (
  'the of and to in a is that for it as was with be by on not he i this are or his from at which but have an ' +
  'they you were her she there been one all we their has would when if so no what can more will up out about ' +
  'who them some could him into its then two time my only other new like over also do any may these people ' +
  'after first made very than now well way our just where most know between each must through back years much ' +
  'good before see make great how should down because long those world still such here own old life same work ' +
  'day another little take come never us under last while man might us house being right part found both think ' +
  'three small place again year end once without high large small every since home best water light fire river ' +
  'mountain city road night morning story song word name hand eye head voice friend mother father child king ' +
  'queen stone tree forest garden window door table book letter paper ship sea sky sun moon star wind rain snow ' +
  'red blue green black white gold silver dark bright quiet loud warm cold soft hard fast slow happy strange ' +
  'walk run open close find give tell ask turn begin keep hold bring write read speak listen remember dream ' +
  'always often sometimes together nothing something everything anything someone nobody inside outside above ' +
  'below around across toward within against during before after until although however therefore perhaps ' +
  'hello yes thank please sorry question answer model server token engine inferno flame ember spark'
).split(' ');

const COMMON_SUFFIXES = ['s', 'ed', 'ing', 'er', 'ly', 'est', 'tion', 'ness', 'ment', 'able', 'ful', 'less'];
const PUNCTUATION = [...'.,!?\'"-:;()'];
const LETTERS = [...'abcdefghijklmnopqrstuvwxyz'];

/**
 * Lays out a SentencePiece-style vocabulary of exactly `size` tokens: specials, 256 byte tokens, then normal
 * pieces. Multi-character pieces are added after their prefixes, so llama.cpp's SPM tokenizer (which merges
 * adjacent pieces whose concatenation is in the vocabulary) can always build them; anything else falls back
 * to byte tokens, so every string round-trips.
 */
export function buildVocabulary(size: number): Vocabulary {
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  const seen = new Set<string>();
  const add = (text: string, type: number, score: number): void => {
    if (seen.has(text) || tokens.length >= size) return;
    seen.add(text);
    tokens.push(text);
    scores.push(score);
    types.push(type);
  };

  add('<unk>', TokenType.unknown, 0);
  add('<s>', TokenType.control, 0);
  add('</s>', TokenType.control, 0);
  add('<|im_start|>', TokenType.control, 0);
  add('<|im_end|>', TokenType.control, 0);
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, TokenType.byte, 0);
  if (tokens.length + 1 > size) throw new Error(`vocabulary size ${size} is too small for the special and byte tokens`);

  // Normal pieces get decreasing scores: the tokenizer prefers merges into earlier (more "frequent") pieces.
  let rank = 0;
  const addPiece = (text: string): void => add(text, TokenType.normal, -rank++);
  const addWithPrefixes = (text: string): void => {
    for (let end = 1; end <= text.length; end++) addPiece(text.slice(0, end));
  };

  addPiece(SPACE);
  for (const letter of LETTERS) addPiece(letter);
  for (const p of PUNCTUATION) addPiece(p);
  for (let digit = 0; digit <= 9; digit++) addPiece(String(digit));
  for (const letter of LETTERS) addPiece(letter.toUpperCase());
  for (const word of COMMON_WORDS) addWithPrefixes(SPACE + word);
  for (const suffix of COMMON_SUFFIXES) addWithPrefixes(suffix);
  for (const word of COMMON_WORDS) addWithPrefixes(SPACE + word[0]!.toUpperCase() + word.slice(1));
  for (const word of COMMON_WORDS) for (const suffix of COMMON_SUFFIXES) addWithPrefixes(SPACE + word + suffix);
  // Fill the rest with letter combinations, shortest first, both word-initial and word-internal.
  for (let length = 2; tokens.length < size; length++) {
    for (const combo of letterCombinations(length)) {
      if (tokens.length >= size) break;
      addPiece(SPACE + combo);
      addPiece(combo);
    }
  }
  return { tokens, scores, types };
}

function* letterCombinations(length: number): Generator<string> {
  if (length === 0) {
    yield '';
    return;
  }
  for (const head of letterCombinations(length - 1)) for (const letter of LETTERS) yield head + letter;
}

// ---------------------------------------------------------------------------------------------------------------
// Metadata

function buildMetadata(
  presetName: DemoPresetName,
  preset: DemoPreset,
  llamaFtype: number,
  vocabulary: Vocabulary,
): Record<string, GgufValue> {
  const headDim = preset.embeddingLength / preset.headCount;
  return {
    'general.architecture': gguf.string('llama'),
    'general.name': gguf.string(`Inferno demo ${presetName}`),
    'general.file_type': gguf.u32(llamaFtype),
    'llama.vocab_size': gguf.u32(preset.vocabSize),
    'llama.context_length': gguf.u32(preset.contextLength),
    'llama.embedding_length': gguf.u32(preset.embeddingLength),
    'llama.block_count': gguf.u32(preset.blockCount),
    'llama.feed_forward_length': gguf.u32(preset.feedForwardLength),
    'llama.attention.head_count': gguf.u32(preset.headCount),
    'llama.attention.head_count_kv': gguf.u32(preset.headCountKv),
    'llama.rope.dimension_count': gguf.u32(headDim),
    'llama.attention.layer_norm_rms_epsilon': gguf.f32(1e-5),
    'llama.rope.freq_base': gguf.f32(10000),
    'tokenizer.ggml.model': gguf.string('llama'),
    'tokenizer.ggml.tokens': gguf.strings(vocabulary.tokens),
    'tokenizer.ggml.scores': gguf.f32s(vocabulary.scores),
    'tokenizer.ggml.token_type': gguf.i32s(vocabulary.types),
    'tokenizer.ggml.bos_token_id': gguf.u32(DEMO_TOKEN.bos),
    'tokenizer.ggml.eos_token_id': gguf.u32(END_OF_TURN),
    'tokenizer.ggml.unknown_token_id': gguf.u32(DEMO_TOKEN.unknown),
    'tokenizer.ggml.padding_token_id': gguf.u32(DEMO_TOKEN.unknown),
    'tokenizer.ggml.add_bos_token': gguf.bool(true),
    'tokenizer.ggml.add_eos_token': gguf.bool(false),
    // No SentencePiece space prefix: with it, llama.cpp puts a space after every special token ("<|im_start|> user").
    'tokenizer.ggml.add_space_prefix': gguf.bool(false),
    'tokenizer.chat_template': gguf.string(CHATML_TEMPLATE),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Weights

/**
 * The residual dimension held constant through the network: its embedding column is CONSTANT_ACTIVATION for
 * every token and no layer writes to it (its rows of attn_output and ffn_down are zero). After the final
 * RMS norm it is a near-constant input, so its column of output.weight acts as a per-token logit bias.
 */
const CONSTANT_ACTIVATION = 4;
/** Typical size of the random logits; larger makes sampling less uniform across the vocabulary. */
const LOGIT_SCALE = 2;
const BYTE_TOKEN_BIAS = -3; // bytes are rarer than pieces, so the gibberish is mostly word-like
const SUPPRESSED_BIAS = -30; // control tokens other than the end of turn never appear
/** Values per chunk handed to the writer: whole rows, about 256 KB of float32. */
const CHUNK_ELEMENTS = 64 * 1024;

function buildTensors(preset: DemoPreset, vocabulary: Vocabulary, matrixType: GgmlType, seed: number): GgufTensorSpec[] {
  const nEmbd = preset.embeddingLength;
  const nFf = preset.feedForwardLength;
  const nVocab = preset.vocabSize;
  const kvDim = (nEmbd / preset.headCount) * preset.headCountKv;
  const constantDim = nEmbd - 1;
  if (matrixType === GgmlType.Q8_0 && (nEmbd % Q8_0_BLOCK_SIZE !== 0 || nFf % Q8_0_BLOCK_SIZE !== 0)) {
    throw new Error(`Q8_0 needs embedding and feed-forward lengths that are multiples of ${Q8_0_BLOCK_SIZE}`);
  }
  // Residual branches are scaled down so the stream grows slowly with depth, keeping activations sane.
  const branchScale = 1 / Math.sqrt(2 * preset.blockCount);
  // Expected value of the constant dimension after the final RMS norm, with the other dimensions ~unit size.
  const normalizedConstant = CONSTANT_ACTIVATION / Math.sqrt((CONSTANT_ACTIVATION ** 2 + nEmbd - 1) / nEmbd);
  const uniform = (std: number) => (rng: Rng, out: Float32Array) => fillUniform(rng, out, std);
  const norm = (rng: Rng, out: Float32Array) => {
    for (let i = 0; i < out.length; i++) out[i] = 1 + (rng.next() - 0.5) * 0.1;
  };
  const matrix = (name: string, cols: number, rows: number, fillRow: RowFiller, type = matrixType): GgufTensorSpec => ({
    name,
    dims: [cols, rows],
    type,
    data: () => generateRows(seed, name, rows, cols, fillRow),
  });
  const vector = (name: string, length: number, fill: RowFiller): GgufTensorSpec => ({
    name,
    dims: [length],
    type: GgmlType.F32, // norms stay F32, as in every llama.cpp conversion
    data: () => generateRows(seed, name, 1, length, fill),
  });
  const withZeroRow = (row: number, fill: RowFiller): RowFiller => (rng, out, index) => {
    fill(rng, out, index);
    if (index === row) out.fill(0);
  };

  const tensors: GgufTensorSpec[] = [
    matrix('token_embd.weight', nEmbd, nVocab, (rng, out) => {
      fillUniform(rng, out, 1);
      out[constantDim] = CONSTANT_ACTIVATION;
    }),
  ];
  for (let layer = 0; layer < preset.blockCount; layer++) {
    const blk = `blk.${layer}`;
    tensors.push(
      vector(`${blk}.attn_norm.weight`, nEmbd, norm),
      matrix(`${blk}.attn_q.weight`, nEmbd, nEmbd, uniform(1 / Math.sqrt(nEmbd))),
      matrix(`${blk}.attn_k.weight`, nEmbd, kvDim, uniform(1 / Math.sqrt(nEmbd))),
      matrix(`${blk}.attn_v.weight`, nEmbd, kvDim, uniform(1 / Math.sqrt(nEmbd))),
      matrix(`${blk}.attn_output.weight`, nEmbd, nEmbd, withZeroRow(constantDim, uniform(branchScale / Math.sqrt(nEmbd)))),
      vector(`${blk}.ffn_norm.weight`, nEmbd, norm),
      matrix(`${blk}.ffn_gate.weight`, nEmbd, nFf, uniform(1 / Math.sqrt(nEmbd))),
      matrix(`${blk}.ffn_up.weight`, nEmbd, nFf, uniform(1 / Math.sqrt(nEmbd))),
      matrix(`${blk}.ffn_down.weight`, nFf, nEmbd, withZeroRow(constantDim, uniform(branchScale / Math.sqrt(nFf)))),
    );
  }
  tensors.push(
    vector('output_norm.weight', nEmbd, (rng, out) => {
      norm(rng, out);
      out[constantDim] = 1;
    }),
    matrix('output.weight', nEmbd, nVocab, (rng, out, token) => {
      fillUniform(rng, out, LOGIT_SCALE / Math.sqrt(nEmbd));
      // The end of turn gets a bias only, no context-dependent part: its probability stays about the same at
      // every step (a steady stopping rate), and greedy decoding rarely picks it over the best random logit.
      if (token === END_OF_TURN) out.fill(0);
      out[constantDim] = tokenBias(token, vocabulary, preset.eosLogitBias, rng) / normalizedConstant;
    }),
  );
  return tensors;
}

/**
 * Tokens that close JSON strings, objects and arrays. Under a JSON grammar the model chooses at
 * each step between one of these and continuing; with no bias random weights almost always
 * continue, so constrained output would run to max_tokens. Biased like the end of turn, strings and
 * containers close after some tokens, as a real model's do.
 */
const JSON_CLOSERS: ReadonlyMap<string, number> = new Map([
  ['"', 1], // relative to the end of turn's bias
  ['<0x7D>', -2], // } and ], byte tokens (rarer than pieces, but not as rare as other bytes)
  ['<0x5D>', -2],
]);

function tokenBias(token: number, vocabulary: Vocabulary, eosBias: number, rng: Rng): number {
  if (token === END_OF_TURN) return eosBias;
  const closer = JSON_CLOSERS.get(vocabulary.tokens[token]!);
  if (closer !== undefined) return eosBias + closer;
  switch (vocabulary.types[token]) {
    case TokenType.normal:
      return (rng.next() - 0.5) * 1; // small, so some pieces are a little more likely than others
    case TokenType.byte:
      return BYTE_TOKEN_BIAS;
    default:
      return SUPPRESSED_BIAS;
  }
}

type RowFiller = (rng: Rng, out: Float32Array, row: number) => void;

/** Yields a tensor's rows in chunks; each tensor has its own PRNG stream, so tensors are independent of order. */
function* generateRows(seed: number, name: string, rows: number, cols: number, fillRow: RowFiller): Generator<Float32Array> {
  const rng = new Rng(mixSeed(seed, name));
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / cols));
  for (let start = 0; start < rows; start += rowsPerChunk) {
    const count = Math.min(rowsPerChunk, rows - start);
    const chunk = new Float32Array(count * cols);
    for (let r = 0; r < count; r++) fillRow(rng, chunk.subarray(r * cols, (r + 1) * cols), start + r);
    yield chunk;
  }
}

/** Uniform on [-a, a] with the given standard deviation (a = std * sqrt(3)); no transcendental functions, so exact everywhere. */
function fillUniform(rng: Rng, out: Float32Array, std: number): void {
  const a = std * Math.sqrt(3);
  for (let i = 0; i < out.length; i++) out[i] = (rng.next() * 2 - 1) * a;
}

/** mulberry32: a tiny, fast 32-bit PRNG; plenty for random weights, and identical on every platform. */
class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/** Derives a tensor's 32-bit PRNG seed from the model seed (all 53 bits of it) and the tensor name (FNV-1a). */
function mixSeed(seed: number, name: string): number {
  let h = 0x811c9dc5;
  const feed = (byte: number) => {
    h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  };
  const high = Math.floor(seed / 2 ** 32);
  const low = seed >>> 0;
  for (const word of [low, high >>> 0]) for (let i = 0; i < 4; i++) feed((word >>> (8 * i)) & 0xff);
  for (const byte of Buffer.from(name, 'utf8')) feed(byte);
  return h;
}
