// A small GGUF v3 writer: enough to produce llama.cpp-loadable models (F32, F16, Q8_0 tensors).
// Layout: header, metadata key/values, tensor infos, padding, then each tensor's data aligned to 32 bytes.
// Everything is little-endian. Tensor data is streamed chunk by chunk, so large models never sit in memory whole.
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';

export const GGUF_MAGIC = 'GGUF';
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** GGUF metadata value types (gguf_type in ggml). */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** The tensor types this writer can encode (ggml_type ids). */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q8_0 = 8,
}

/** Elements per Q8_0 block; a block is an f16 scale followed by 32 int8 quants. */
export const Q8_0_BLOCK_SIZE = 32;
const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK_SIZE;

/** A typed metadata value: GGUF stores the type next to each value, so plain JS numbers are not enough. */
export type GgufValue =
  | { type: 'u32'; value: number }
  | { type: 'i32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'string[]'; value: readonly string[] }
  | { type: 'f32[]'; value: ArrayLike<number> }
  | { type: 'i32[]'; value: ArrayLike<number> };

export const gguf = {
  u32: (value: number): GgufValue => ({ type: 'u32', value }),
  i32: (value: number): GgufValue => ({ type: 'i32', value }),
  f32: (value: number): GgufValue => ({ type: 'f32', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  string: (value: string): GgufValue => ({ type: 'string', value }),
  strings: (value: readonly string[]): GgufValue => ({ type: 'string[]', value }),
  f32s: (value: ArrayLike<number>): GgufValue => ({ type: 'f32[]', value }),
  i32s: (value: ArrayLike<number>): GgufValue => ({ type: 'i32[]', value }),
};

export interface GgufTensorSpec {
  name: string;
  /** Dimensions contiguous-first, as GGUF stores them (ne0 is the row length). */
  dims: readonly number[];
  type: GgmlType;
  /**
   * Produces the tensor's values in storage order. Chunks may have any length, but for Q8_0 each chunk
   * must hold whole blocks of 32; the total must equal the product of `dims`.
   */
  data: () => Iterable<Float32Array>;
}

export interface GgufWriteResult {
  path: string;
  bytes: number;
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

export function tensorByteSize(type: GgmlType, dims: readonly number[]): number {
  const n = elementCount(dims);
  switch (type) {
    case GgmlType.F32:
      return n * 4;
    case GgmlType.F16:
      return n * 2;
    case GgmlType.Q8_0:
      return (n / Q8_0_BLOCK_SIZE) * Q8_0_BLOCK_BYTES;
  }
}

const alignUp = (n: number, alignment: number): number => Math.ceil(n / alignment) * alignment;

/**
 * Writes a GGUF v3 file. The file appears at `path` only when complete (temp file + rename),
 * so a crash or error never leaves a half-written model where a loader would find it.
 */
export async function writeGguf(
  path: string,
  metadata: Readonly<Record<string, GgufValue>>,
  tensors: readonly GgufTensorSpec[],
): Promise<GgufWriteResult> {
  for (const tensor of tensors) validateTensor(tensor);

  const withAlignment = { ...metadata, 'general.alignment': gguf.u32(GGUF_ALIGNMENT) };
  const offsets: number[] = [];
  let dataSize = 0;
  for (const tensor of tensors) {
    offsets.push(dataSize);
    dataSize = alignUp(dataSize + tensorByteSize(tensor.type, tensor.dims), GGUF_ALIGNMENT);
  }
  const header = encodeHeader(withAlignment, tensors, offsets);

  const tempPath = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const file = await open(tempPath, 'w');
  let bytes = 0;
  try {
    const headerPadded = alignUp(header.length, GGUF_ALIGNMENT);
    await file.write(header);
    await file.write(Buffer.alloc(headerPadded - header.length));
    bytes = headerPadded;
    for (const [i, tensor] of tensors.entries()) {
      const start = headerPadded + (offsets[i] ?? 0);
      if (bytes < start) {
        await file.write(Buffer.alloc(start - bytes));
        bytes = start;
      }
      bytes += await writeTensorData(file, tensor);
    }
    const end = headerPadded + dataSize;
    if (bytes < end) {
      await file.write(Buffer.alloc(end - bytes));
      bytes = end;
    }
    await file.sync();
    await file.close();
    await rename(tempPath, path);
  } catch (error) {
    await file.close().catch(() => undefined);
    await unlink(tempPath).catch(() => undefined);
    throw error;
  }
  return { path, bytes };
}

function validateTensor(tensor: GgufTensorSpec): void {
  if (tensor.dims.length === 0 || tensor.dims.length > 4) {
    throw new Error(`tensor ${tensor.name}: GGUF tensors have 1 to 4 dimensions, got ${tensor.dims.length}`);
  }
  if (!tensor.dims.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw new Error(`tensor ${tensor.name}: dimensions must be positive integers, got [${tensor.dims.join(', ')}]`);
  }
  if (tensor.type === GgmlType.Q8_0 && (tensor.dims[0] ?? 0) % Q8_0_BLOCK_SIZE !== 0) {
    throw new Error(`tensor ${tensor.name}: Q8_0 needs a first dimension that is a multiple of ${Q8_0_BLOCK_SIZE}`);
  }
}

async function writeTensorData(file: import('node:fs/promises').FileHandle, tensor: GgufTensorSpec): Promise<number> {
  const expected = elementCount(tensor.dims);
  let elements = 0;
  let bytes = 0;
  for (const chunk of tensor.data()) {
    elements += chunk.length;
    if (elements > expected) throw new Error(`tensor ${tensor.name}: more data than its dimensions hold`);
    const encoded = encodeTensorChunk(tensor.type, chunk, tensor.name);
    await file.write(encoded);
    bytes += encoded.length;
  }
  if (elements !== expected) {
    throw new Error(`tensor ${tensor.name}: got ${elements} values, dimensions need ${expected}`);
  }
  return bytes;
}

export function encodeTensorChunk(type: GgmlType, values: Float32Array, name = 'tensor'): Buffer {
  switch (type) {
    case GgmlType.F32: {
      const out = Buffer.alloc(values.length * 4);
      for (let i = 0; i < values.length; i++) out.writeFloatLE(values[i]!, i * 4);
      return out;
    }
    case GgmlType.F16: {
      const out = Buffer.alloc(values.length * 2);
      for (let i = 0; i < values.length; i++) out.writeUInt16LE(float32ToFloat16Bits(values[i]!), i * 2);
      return out;
    }
    case GgmlType.Q8_0:
      if (values.length % Q8_0_BLOCK_SIZE !== 0) {
        throw new Error(`tensor ${name}: Q8_0 data must come in whole blocks of ${Q8_0_BLOCK_SIZE}`);
      }
      return quantizeQ8_0(values);
  }
}

/** Q8_0 as ggml's reference quantizer does it: scale d = max|x| / 127, q = round(x / d). */
export function quantizeQ8_0(values: Float32Array): Buffer {
  const blocks = values.length / Q8_0_BLOCK_SIZE;
  const out = Buffer.alloc(blocks * Q8_0_BLOCK_BYTES);
  for (let b = 0; b < blocks; b++) {
    const base = b * Q8_0_BLOCK_SIZE;
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK_SIZE; j++) amax = Math.max(amax, Math.abs(values[base + j]!));
    const d = amax / 127;
    const inverse = d === 0 ? 0 : 1 / d;
    const at = b * Q8_0_BLOCK_BYTES;
    out.writeUInt16LE(float32ToFloat16Bits(d), at);
    for (let j = 0; j < Q8_0_BLOCK_SIZE; j++) {
      out.writeInt8(Math.max(-127, Math.min(127, Math.round(values[base + j]! * inverse))), at + 2 + j);
    }
  }
  return out;
}

// Scratch views for reinterpreting a float32's bits without allocating per value.
const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE 754 binary32 -> binary16 bits, rounding to nearest even (what ggml's converters do). */
export function float32ToFloat16Bits(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;

  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0); // Inf / NaN
  let e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> Inf
  if (e <= 0) {
    // Subnormal half (or zero): shift the mantissa, with its implicit 1, into place.
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    let half = mantissa >>> shift;
    const remainder = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (remainder > halfway || (remainder === halfway && (half & 1) !== 0)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  if (remainder > 0x1000 || (remainder === 0x1000 && (half & 1) !== 0)) half++; // may carry into the exponent: correct
  return sign | half;
}

/** Serialises everything before the tensor data: small (a few MB at most), so built in memory. */
function encodeHeader(
  metadata: Readonly<Record<string, GgufValue>>,
  tensors: readonly GgufTensorSpec[],
  offsets: readonly number[],
): Buffer {
  const out = new ByteSink();
  out.raw(Buffer.from(GGUF_MAGIC, 'ascii'));
  out.u32(GGUF_VERSION);
  out.u64(tensors.length);
  const entries = Object.entries(metadata);
  out.u64(entries.length);
  for (const [key, value] of entries) {
    out.string(key);
    writeValue(out, value);
  }
  for (const [i, tensor] of tensors.entries()) {
    out.string(tensor.name);
    out.u32(tensor.dims.length);
    for (const d of tensor.dims) out.u64(d);
    out.u32(tensor.type);
    out.u64(offsets[i] ?? 0);
  }
  return out.toBuffer();
}

function writeValue(out: ByteSink, v: GgufValue): void {
  switch (v.type) {
    case 'u32':
      out.u32(GgufValueType.UINT32);
      out.u32(v.value);
      return;
    case 'i32':
      out.u32(GgufValueType.INT32);
      out.i32(v.value);
      return;
    case 'f32':
      out.u32(GgufValueType.FLOAT32);
      out.f32(v.value);
      return;
    case 'bool':
      out.u32(GgufValueType.BOOL);
      out.u8(v.value ? 1 : 0);
      return;
    case 'string':
      out.u32(GgufValueType.STRING);
      out.string(v.value);
      return;
    case 'string[]':
      out.u32(GgufValueType.ARRAY);
      out.u32(GgufValueType.STRING);
      out.u64(v.value.length);
      for (const s of v.value) out.string(s);
      return;
    case 'f32[]':
      out.u32(GgufValueType.ARRAY);
      out.u32(GgufValueType.FLOAT32);
      out.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) out.f32(v.value[i]!);
      return;
    case 'i32[]':
      out.u32(GgufValueType.ARRAY);
      out.u32(GgufValueType.INT32);
      out.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) out.i32(v.value[i]!);
      return;
  }
}

/** A growable little-endian byte buffer. */
class ByteSink {
  private buffer = Buffer.alloc(64 * 1024);
  private length = 0;

  private reserve(n: number): number {
    if (this.length + n > this.buffer.length) {
      const bigger = Buffer.alloc(Math.max(this.buffer.length * 2, this.length + n));
      this.buffer.copy(bigger, 0, 0, this.length);
      this.buffer = bigger;
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  // reserve() may swap in a bigger buffer, so it must run before `this.buffer` is read.
  raw(bytes: Uint8Array): void {
    const at = this.reserve(bytes.length);
    this.buffer.set(bytes, at);
  }
  u8(v: number): void {
    const at = this.reserve(1);
    this.buffer.writeUInt8(v, at);
  }
  u32(v: number): void {
    const at = this.reserve(4);
    this.buffer.writeUInt32LE(v, at);
  }
  i32(v: number): void {
    const at = this.reserve(4);
    this.buffer.writeInt32LE(v, at);
  }
  f32(v: number): void {
    const at = this.reserve(4);
    this.buffer.writeFloatLE(v, at);
  }
  u64(v: number): void {
    const at = this.reserve(8);
    this.buffer.writeBigUInt64LE(BigInt(v), at);
  }
  /** GGUF strings: u64 byte length, then UTF-8 bytes, no terminator. */
  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.raw(bytes);
  }

  toBuffer(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}
