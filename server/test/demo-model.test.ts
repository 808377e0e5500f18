import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, LlamaChatSession, LlamaCompletion, type Llama, type LlamaModel } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PRESETS, DEMO_TOKEN, buildVocabulary, writeDemoModel } from '../src/engine/demo-model.js';
import { GgufFormatError, readGgufInfo } from '../src/engine/gguf-reader.js';
import { GgmlType, float32ToFloat16Bits, writeGguf } from '../src/engine/gguf-writer.js';

let dir: string;
let tinyPath: string;

const sha256 = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'inferno-demo-model-'));
  tinyPath = join(dir, 'tiny.gguf');
  await writeDemoModel(tinyPath, { preset: 'tiny', seed: 1 });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeDemoModel', () => {
  it('is deterministic: same seed, same bytes; another seed, other bytes', async () => {
    const again = await writeDemoModel(join(dir, 'tiny-again.gguf'), { preset: 'tiny', seed: 1 });
    const other = await writeDemoModel(join(dir, 'tiny-other.gguf'), { preset: 'tiny', seed: 2 });
    expect(await sha256(again.path)).toBe(await sha256(tinyPath));
    expect(await sha256(other.path)).not.toBe(await sha256(tinyPath));
    expect(again.bytes).toBe((await stat(tinyPath)).size);
  });

  it('writes a header that reads back: llama metadata, SentencePiece vocabulary, ChatML template', async () => {
    const info = await readGgufInfo(tinyPath, { arrays: true });
    const preset = DEMO_PRESETS.tiny;
    expect(info.version).toBe(3);
    expect(info.architecture).toBe('llama');
    expect(info.contextLength).toBe(preset.contextLength);
    expect(info.fileType).toBe('F16');
    expect(info.metadata).toMatchObject({
      'general.name': 'Inferno demo tiny',
      'general.alignment': 32,
      'llama.vocab_size': 512,
      'llama.embedding_length': 128,
      'llama.block_count': 2,
      'llama.attention.head_count': preset.headCount,
      'llama.attention.head_count_kv': preset.headCountKv,
      'llama.rope.dimension_count': 128 / preset.headCount,
      'llama.rope.freq_base': 10000,
      'tokenizer.ggml.model': 'llama',
      'tokenizer.ggml.bos_token_id': DEMO_TOKEN.bos,
      'tokenizer.ggml.eos_token_id': DEMO_TOKEN.imEnd,
      'tokenizer.ggml.add_bos_token': true,
    });
    expect(info.metadata['llama.attention.layer_norm_rms_epsilon']).toBeCloseTo(1e-5, 10);
    expect(info.metadata['tokenizer.chat_template']).toContain('<|im_start|>');

    const tokens = info.metadata['tokenizer.ggml.tokens'] as string[];
    const types = info.metadata['tokenizer.ggml.token_type'] as number[];
    expect(tokens).toHaveLength(512);
    expect(new Set(tokens).size).toBe(512);
    expect(tokens.slice(0, 5)).toEqual(['<unk>', '<s>', '</s>', '<|im_start|>', '<|im_end|>']);
    expect(types.slice(0, 5)).toEqual([2, 3, 3, 3, 3]);
    expect(tokens[5 + 0x41]).toBe('<0x41>');
    expect(types[5 + 0x41]).toBe(6);
    expect(tokens).toContain('\u2581the');
    expect(info.metadata['tokenizer.ggml.scores']).toHaveLength(512);

    expect(info.tensors).toHaveLength(3 + 9 * 2);
    expect(info.tensors.find((t) => t.name === 'token_embd.weight')).toMatchObject({ name: 'token_embd.weight', dims: [128, 512], type: 'F16', bytes: 128 * 512 * 2 });
    expect(info.tensors.find((t) => t.name === 'blk.1.attn_k.weight')?.dims).toEqual([128, 64]);
    expect(info.tensors.find((t) => t.name === 'blk.0.ffn_down.weight')?.dims).toEqual([384, 128]);
    expect(info.tensors.find((t) => t.name === 'output_norm.weight')).toMatchObject({ name: 'output_norm.weight', dims: [128], type: 'F32', bytes: 128 * 4 });
  });

  it('writes F32 and Q8_0 on request, with the sizes those types imply', async () => {
    const f32 = await writeDemoModel(join(dir, 'tiny-f32.gguf'), { preset: 'tiny', fileType: 'f32' });
    const q8 = await writeDemoModel(join(dir, 'tiny-q8.gguf'), { preset: 'tiny', fileType: 'q8_0' });
    const f32Info = await readGgufInfo(f32.path);
    const q8Info = await readGgufInfo(q8.path);
    expect(f32Info.fileType).toBe('F32');
    expect(q8Info.fileType).toBe('Q8_0');
    expect(q8Info.tensors.find((t) => t.name === 'output.weight')?.type).toBe('Q8_0');
    expect(q8Info.tensors.find((t) => t.name === 'blk.0.attn_norm.weight')?.type).toBe('F32');
    expect(f32Info.parameterCount).toBe(f32.parameters);
    // Q8_0 spends 34 bytes per 32 weights, F32 128.
    expect(q8.bytes / f32.bytes).toBeGreaterThan(0.25);
    expect(q8.bytes / f32.bytes).toBeLessThan(0.3);
  });

  it('writes the small preset: 32000-token vocabulary, ~60M parameters, ~64 MB as Q8_0', async () => {
    const small = await writeDemoModel(join(dir, 'small.gguf'), { preset: 'small' });
    const info = await readGgufInfo(small.path, { arrays: true });
    expect(info.fileType).toBe('Q8_0');
    expect(info.parameterCount).toBe(small.parameters);
    expect(small.parameters).toBeGreaterThan(55e6);
    expect(small.parameters).toBeLessThan(65e6);
    expect(small.bytes).toBeGreaterThan(60e6);
    expect(small.bytes).toBeLessThan(70e6);
    const tokens = info.metadata['tokenizer.ggml.tokens'] as string[];
    expect(tokens).toHaveLength(32000);
    expect(new Set(tokens).size).toBe(32000);
    await rm(small.path);
  });
});

describe('GGUF writer and reader', () => {
  it('rejects files that are not GGUF, or are cut short, with a clear error', async () => {
    const text = join(dir, 'notes.gguf');
    await writeFile(text, 'just some text, not a model\n');
    await expect(readGgufInfo(text)).rejects.toThrow(/not a GGUF file/i);
    await expect(readGgufInfo(text)).rejects.toBeInstanceOf(GgufFormatError);

    const cut = join(dir, 'cut.gguf');
    await writeFile(cut, (await readFile(tinyPath)).subarray(0, 200));
    await expect(readGgufInfo(cut)).rejects.toThrow(/truncated/i);
  });

  it('converts float32 to float16 with round-to-nearest-even', () => {
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float32ToFloat16Bits(-2)).toBe(0xc000);
    expect(float32ToFloat16Bits(0.1)).toBe(0x2e66);
    expect(float32ToFloat16Bits(65504)).toBe(0x7bff);
    expect(float32ToFloat16Bits(1e6)).toBe(0x7c00);
    expect(float32ToFloat16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // halfway, ties to even
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
  });

  it('refuses Q8_0 tensors whose rows are not whole blocks, and leaves no file behind', async () => {
    const path = join(dir, 'bad.gguf');
    const tensor = { name: 'w', dims: [30, 2], type: GgmlType.Q8_0, data: () => [new Float32Array(60)] };
    await expect(writeGguf(path, {}, [tensor])).rejects.toThrow(/multiple of 32/);
    await expect(stat(path)).rejects.toThrow();
  });

  it('builds vocabularies of exactly the requested size', () => {
    for (const size of [300, 512, 5000]) expect(buildVocabulary(size).tokens).toHaveLength(size);
  });
});

describe('the demo model in llama.cpp (node-llama-cpp, CPU)', () => {
  let llama: Llama;
  let model: LlamaModel;

  beforeAll(async () => {
    llama = await getLlama({ gpu: false, build: 'never' });
    model = await llama.loadModel({ modelPath: tinyPath });
  });

  afterAll(async () => {
    await model?.dispose();
    await llama?.dispose();
  });

  it('tokenizes and detokenizes any text, non-ASCII through byte tokens', () => {
    const text = 'Hello world, the river runs — café, 日本語 🔥\n\tend';
    const tokens = model.tokenize(text);
    expect(model.detokenize(tokens)).toBe(text);
    expect(tokens.some((t) => t >= 5 && t < 5 + 256)).toBe(true); // byte fallback used
    expect(model.tokenize(' the')).toHaveLength(1); // "▁the" is one piece
    expect(model.tokens.bos).toBe(DEMO_TOKEN.bos);
    expect(model.tokens.eos).toBe(DEMO_TOKEN.imEnd);
  });

  it('generates the same text for the same seed, and stops by itself on some seeds', async () => {
    const context = await model.createContext({ threads: 1, contextSize: 512 });
    try {
      const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
      const generate = (seed: number) =>
        completion.generateCompletionWithMeta('Once upon a time', { maxTokens: 200, temperature: 0.8, seed });

      const first = await generate(7);
      const second = await generate(7);
      expect(second.response).toBe(first.response);

      const stopReasons: string[] = [];
      for (let seed = 1; seed <= 8; seed++) stopReasons.push((await generate(seed)).metadata.stopReason);
      expect(stopReasons.filter((r) => r === 'eogToken').length).toBeGreaterThanOrEqual(2);
    } finally {
      await context.dispose();
    }
  });

  it('chats through the ChatML template', async () => {
    const context = await model.createContext({ threads: 1, contextSize: 512 });
    try {
      const sequence = context.getSequence();
      const session = new LlamaChatSession({ contextSequence: sequence, systemPrompt: 'You are a demo.' });
      expect(session.chatWrapper.wrapperName).toBe('ChatML');
      const { response, stopReason } = await session.promptWithMeta('Hi there!', { maxTokens: 64, temperature: 0.8, seed: 3 });
      expect(['eogToken', 'stopGenerationTrigger', 'maxTokens']).toContain(stopReason);
      expect(response.map((item) => (typeof item === 'string' ? item : '')).join('')).not.toContain('<|im_');

      const prompt = model.detokenize(sequence.contextTokens, true);
      expect(prompt).toContain('<|im_start|>system\nYou are a demo.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n');
    } finally {
      await context.dispose();
    }
  });
});
