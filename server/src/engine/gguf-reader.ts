// Reads and fully validates a GGUF file's header, metadata and tensor table (never the tensor data
// itself), to describe a model (architecture, context length, parameter count, file type) and to
// refuse files llama.cpp could not load, or would read out of bounds, before it ever sees them.
import { open, type FileHandle } from 'node:fs/promises';
import { GgufValueType } from './gguf-writer.js';

export interface GgufTensorInfo {
  name: string;
  /** Contiguous-first, as stored. */
  dims: number[];
  /** ggml type name, e.g. "F16", "Q8_0", "Q4_K". */
  type: string;
  /** Byte offset of the data, relative to the data section. */
  offset: number;
  /** Bytes of data. */
  bytes: number;
}

/** A metadata array that was skipped rather than read into memory (see `GgufReadOptions.arrays`). */
export interface GgufArraySummary {
  itemType: GgufValueType;
  length: number;
}

export interface GgufInfo {
  version: number;
  /** Metadata by key; arrays are `GgufArraySummary`s unless read with `arrays: true`. */
  metadata: Record<string, unknown>;
  tensors: GgufTensorInfo[];
  architecture: string | undefined;
  contextLength: number | undefined;
  parameterCount: number;
  /** From `general.file_type` (llama_ftype), e.g. "Q8_0", "Q4_K_M"; undefined when absent. */
  fileType: string | undefined;
  alignment: number;
  /** Byte offset of the first tensor's data. */
  dataOffset: number;
}

export interface GgufReadOptions {
  /** Read metadata arrays (vocabularies, merges) into memory; by default only their type and length. */
  arrays?: boolean;
}

/** The file is not a GGUF model llama.cpp can load; the message says why (and never names a path). */
export class GgufFormatError extends Error {
  override name = 'GgufFormatError';
}

// ggml_type id -> name, elements per block and bytes per block (ggml.c's type traits); gaps are
// types removed from ggml. A test checks the table against the bundled llama.cpp's own.
export const GGML_TYPES: Record<number, { name: string; block: number; bytes: number }> = {
  0: { name: 'F32', block: 1, bytes: 4 },
  1: { name: 'F16', block: 1, bytes: 2 },
  2: { name: 'Q4_0', block: 32, bytes: 18 },
  3: { name: 'Q4_1', block: 32, bytes: 20 },
  6: { name: 'Q5_0', block: 32, bytes: 22 },
  7: { name: 'Q5_1', block: 32, bytes: 24 },
  8: { name: 'Q8_0', block: 32, bytes: 34 },
  9: { name: 'Q8_1', block: 32, bytes: 36 },
  10: { name: 'Q2_K', block: 256, bytes: 84 },
  11: { name: 'Q3_K', block: 256, bytes: 110 },
  12: { name: 'Q4_K', block: 256, bytes: 144 },
  13: { name: 'Q5_K', block: 256, bytes: 176 },
  14: { name: 'Q6_K', block: 256, bytes: 210 },
  15: { name: 'Q8_K', block: 256, bytes: 292 },
  16: { name: 'IQ2_XXS', block: 256, bytes: 66 },
  17: { name: 'IQ2_XS', block: 256, bytes: 74 },
  18: { name: 'IQ3_XXS', block: 256, bytes: 98 },
  19: { name: 'IQ1_S', block: 256, bytes: 50 },
  20: { name: 'IQ4_NL', block: 32, bytes: 18 },
  21: { name: 'IQ3_S', block: 256, bytes: 110 },
  22: { name: 'IQ2_S', block: 256, bytes: 82 },
  23: { name: 'IQ4_XS', block: 256, bytes: 136 },
  24: { name: 'I8', block: 1, bytes: 1 },
  25: { name: 'I16', block: 1, bytes: 2 },
  26: { name: 'I32', block: 1, bytes: 4 },
  27: { name: 'I64', block: 1, bytes: 8 },
  28: { name: 'F64', block: 1, bytes: 8 },
  29: { name: 'IQ1_M', block: 256, bytes: 56 },
  30: { name: 'BF16', block: 1, bytes: 2 },
  34: { name: 'TQ1_0', block: 256, bytes: 54 },
  35: { name: 'TQ2_0', block: 256, bytes: 66 },
  39: { name: 'MXFP4', block: 32, bytes: 17 },
  // Newer types that the bundled llama.cpp knows (named here by id).
  40: { name: 'TYPE_40', block: 64, bytes: 36 },
  41: { name: 'TYPE_41', block: 128, bytes: 18 },
  42: { name: 'TYPE_42', block: 64, bytes: 18 },
};

// llama_ftype ids -> names (llama.h), the value of `general.file_type`.
const LLAMA_FTYPE_NAMES: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 7: 'Q8_0', 8: 'Q5_0', 9: 'Q5_1',
  10: 'Q2_K', 11: 'Q3_K_S', 12: 'Q3_K_M', 13: 'Q3_K_L', 14: 'Q4_K_S', 15: 'Q4_K_M', 16: 'Q5_K_S', 17: 'Q5_K_M',
  18: 'Q6_K', 19: 'IQ2_XXS', 20: 'IQ2_XS', 21: 'Q2_K_S', 22: 'IQ3_XS', 23: 'IQ3_XXS', 24: 'IQ1_S', 25: 'IQ4_NL',
  26: 'IQ3_S', 27: 'IQ3_M', 28: 'IQ2_S', 29: 'IQ2_M', 30: 'IQ4_XS', 31: 'IQ1_M', 32: 'BF16',
  36: 'TQ1_0', 37: 'TQ2_0', 38: 'MXFP4_MOE',
};

/** Bytes of each fixed-size metadata value type. */
const VALUE_BYTES: Partial<Record<GgufValueType, number>> = {
  [GgufValueType.UINT8]: 1, [GgufValueType.INT8]: 1, [GgufValueType.BOOL]: 1,
  [GgufValueType.UINT16]: 2, [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4, [GgufValueType.INT32]: 4, [GgufValueType.FLOAT32]: 4,
  [GgufValueType.UINT64]: 8, [GgufValueType.INT64]: 8, [GgufValueType.FLOAT64]: 8,
};

/**
 * Bounds far beyond any real model (the largest vocabularies and merge lists are well under a
 * million entries, headers under 32 MB), which keep a hostile file from costing time or memory.
 */
export const GGUF_LIMITS = {
  /** Header, metadata and tensor table together. */
  maxHeaderBytes: 64 * 1024 * 1024,
  maxMetadataEntries: 65_536,
  maxKeyBytes: 4096,
  maxStringBytes: 16 * 1024 * 1024,
  maxArrayLength: 4 * 1024 * 1024,
  /** Items of all metadata arrays together (a large vocabulary's tokens, scores, types and merges: ~2M). */
  maxArrayItems: 16 * 1024 * 1024,
  maxTensors: 65_536,
  /** llama.cpp's GGML_MAX_NAME (64) counts the terminating NUL. */
  maxTensorNameBytes: 63,
  /** Per dimension; a tensor's bytes must also lie within the file. */
  maxDimension: 2 ** 32,
} as const;

const READ_CHUNK = 1024 * 1024;

/**
 * Reads and validates the header of a GGUF file. The work is linear in the header's size (arrays are
 * skipped, not decoded, unless asked for) and the file is read in 1 MB chunks, so the event loop
 * gets control between chunks however large the header is. Throws GgufFormatError for anything
 * llama.cpp would refuse or misread: bad magic or version, counts and sizes beyond the limits,
 * duplicate keys or tensor names, unknown tensor types, dimensions of 0 or too large, tensor data
 * that is misaligned, out of order, overlapping or beyond the end of the file.
 */
export async function readGgufInfo(path: string, options: GgufReadOptions = {}): Promise<GgufInfo> {
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    return await parse(new ChunkReader(file, size), options);
  } finally {
    await file.close();
  }
}

async function parse(reader: ChunkReader, options: GgufReadOptions): Promise<GgufInfo> {
  if (reader.size < 8) throw new GgufFormatError(`Not a GGUF file (only ${reader.size} bytes)`);
  const magic = (await reader.bytes(4)).toString('latin1');
  if (magic !== 'GGUF') throw new GgufFormatError(`Not a GGUF file (magic ${JSON.stringify(magic)}, expected "GGUF")`);
  const version = await reader.u32();
  // v1 used 32-bit counts and is long obsolete; llama.cpp itself no longer loads it.
  if (version !== 2 && version !== 3) throw new GgufFormatError(`Unsupported GGUF version ${version}`);
  const tensorCount = await reader.count('tensors', GGUF_LIMITS.maxTensors);
  const kvCount = await reader.count('metadata entries', GGUF_LIMITS.maxMetadataEntries);

  const metadata: Record<string, unknown> = Object.create(null);
  const types = new Map<string, GgufValueType>();
  let arrayItems = 0;
  for (let i = 0; i < kvCount; i++) {
    const key = await reader.string(GGUF_LIMITS.maxKeyBytes, 'metadata key');
    if (types.has(key)) throw new GgufFormatError(`Duplicate metadata key ${JSON.stringify(key)}`);
    const type = (await reader.u32()) as GgufValueType;
    types.set(key, type);
    const value = await readValue(reader, type, options);
    metadata[key] = value;
    if (type === GgufValueType.ARRAY) arrayItems += Array.isArray(value) ? value.length : (value as GgufArraySummary).length;
    if (arrayItems > GGUF_LIMITS.maxArrayItems) throw new GgufFormatError(`The metadata arrays hold more than ${GGUF_LIMITS.maxArrayItems} items together`);
  }

  const alignmentType = types.get('general.alignment');
  const alignment = alignmentType === undefined ? 32 : metadata['general.alignment'];
  if (alignmentType !== undefined && alignmentType !== GgufValueType.UINT32) throw new GgufFormatError('general.alignment must be a uint32');
  if (typeof alignment !== 'number' || alignment === 0 || (alignment & (alignment - 1)) !== 0) {
    throw new GgufFormatError(`Bad alignment ${String(alignment)}: must be a power of two`);
  }

  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  let parameterCount = 0;
  let expectedOffset = 0;
  for (let i = 0; i < tensorCount; i++) {
    const name = await reader.string(GGUF_LIMITS.maxTensorNameBytes, 'tensor name');
    if (names.has(name)) throw new GgufFormatError(`Duplicate tensor name ${JSON.stringify(name)}`);
    names.add(name);
    const nDims = await reader.u32();
    if (nDims < 1 || nDims > 4) throw new GgufFormatError(`Tensor ${name} has ${nDims} dimensions (1 to 4 allowed)`);
    const dims: number[] = [];
    let elements = 1;
    for (let d = 0; d < nDims; d++) {
      const dim = await reader.u64(`dimension of tensor ${name}`);
      if (dim < 1 || dim > GGUF_LIMITS.maxDimension) throw new GgufFormatError(`Tensor ${name} has a dimension of ${dim} (1 to 2^32 allowed)`);
      dims.push(dim);
      elements *= dim;
      if (elements > reader.size * 8) throw new GgufFormatError(`Tensor ${name} [${dims.join(', ')}...] has more elements than the file could hold`);
    }
    const typeId = await reader.u32();
    const type = GGML_TYPES[typeId];
    if (!type) throw new GgufFormatError(`Tensor ${name} has an unknown ggml type ${typeId}`);
    if (dims[0]! % type.block !== 0) throw new GgufFormatError(`Tensor ${name}: its first dimension ${dims[0]} is not a multiple of ${type.name}'s block of ${type.block}`);
    const offset = await reader.u64(`offset of tensor ${name}`);
    // llama.cpp lays tensors out back to back, each aligned, in table order, and insists on it.
    if (offset !== expectedOffset) throw new GgufFormatError(`Tensor ${name} has its data at offset ${offset}; expected ${expectedOffset} (aligned, in order, not overlapping)`);
    const bytes = (elements / type.block) * type.bytes;
    expectedOffset = Math.ceil((offset + bytes) / alignment) * alignment;
    tensors.push({ name, dims, type: type.name, offset, bytes });
    parameterCount += elements;
  }

  const dataOffset = Math.ceil(reader.position / alignment) * alignment;
  const last = tensors.at(-1);
  const dataEnd = dataOffset + (last ? last.offset + last.bytes : 0);
  if (dataEnd > reader.size) {
    throw new GgufFormatError(`Truncated: the tensor data needs ${dataEnd} bytes, the file has ${reader.size}${last ? ` (tensor ${last.name} runs past the end)` : ''}`);
  }

  const architecture = typeof metadata['general.architecture'] === 'string' ? metadata['general.architecture'] : undefined;
  if (architecture === undefined) throw new GgufFormatError('No general.architecture: llama.cpp cannot load a model without one');
  if (tensors.length === 0) throw new GgufFormatError('No tensors: not a model');
  const contextLength = metadata[`${architecture}.context_length`];
  const fileTypeId = metadata['general.file_type'];
  return {
    version,
    metadata: { ...metadata },
    tensors,
    architecture,
    contextLength: typeof contextLength === 'number' ? contextLength : undefined,
    parameterCount,
    fileType: typeof fileTypeId === 'number' ? (LLAMA_FTYPE_NAMES[fileTypeId] ?? `FTYPE_${fileTypeId}`) : undefined,
    alignment,
    dataOffset,
  };
}

async function readValue(reader: ChunkReader, type: GgufValueType, options: GgufReadOptions): Promise<unknown> {
  if (type === GgufValueType.STRING) return reader.string(GGUF_LIMITS.maxStringBytes, 'metadata string');
  if (type === GgufValueType.ARRAY) {
    const itemType = (await reader.u32()) as GgufValueType;
    if (itemType === GgufValueType.ARRAY) throw new GgufFormatError('Nested metadata arrays are not supported');
    const length = await reader.count('metadata array items', GGUF_LIMITS.maxArrayLength);
    if (options.arrays) {
      const items: unknown[] = [];
      for (let i = 0; i < length; i++) items.push(await readValue(reader, itemType, options));
      return items;
    }
    const width = VALUE_BYTES[itemType];
    if (width !== undefined) await reader.skip(length * width);
    else if (itemType === GgufValueType.STRING) await reader.skipStrings(length);
    else throw new GgufFormatError(`Unknown metadata value type ${itemType}`);
    return { itemType, length } satisfies GgufArraySummary;
  }
  const width = VALUE_BYTES[type];
  if (width === undefined) throw new GgufFormatError(`Unknown metadata value type ${type}`);
  const bytes = await reader.bytes(width);
  switch (type) {
    case GgufValueType.UINT8: return bytes.readUInt8(0);
    case GgufValueType.INT8: return bytes.readInt8(0);
    case GgufValueType.BOOL: return bytes.readUInt8(0) !== 0;
    case GgufValueType.UINT16: return bytes.readUInt16LE(0);
    case GgufValueType.INT16: return bytes.readInt16LE(0);
    case GgufValueType.UINT32: return bytes.readUInt32LE(0);
    case GgufValueType.INT32: return bytes.readInt32LE(0);
    case GgufValueType.FLOAT32: return bytes.readFloatLE(0);
    case GgufValueType.UINT64: return bigToNumber(bytes.readBigUInt64LE(0));
    case GgufValueType.INT64: return bigToNumber(bytes.readBigInt64LE(0));
    default: return bytes.readDoubleLE(0);
  }
}

/** 64-bit metadata integers become numbers when exact, bigints otherwise. */
function bigToNumber(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/**
 * Sequential little-endian reads over the header, from a window of the file that is refilled a
 * chunk at a time (each refill is real I/O: the event loop runs in between). Reads that the window
 * already holds resolve without touching the file.
 */
class ChunkReader {
  #window = Buffer.alloc(0);
  /** File offset of `#window[0]`. */
  #start = 0;
  #at = 0;

  constructor(
    private readonly file: FileHandle,
    readonly size: number,
  ) {}

  /** File offset of the next byte to read. */
  get position(): number {
    return this.#start + this.#at;
  }

  async #ensure(n: number): Promise<void> {
    if (this.#window.length - this.#at >= n) return;
    const position = this.position;
    if (position + n > this.size) throw new GgufFormatError('Truncated GGUF header');
    if (position + n > GGUF_LIMITS.maxHeaderBytes) throw new GgufFormatError(`GGUF header larger than ${GGUF_LIMITS.maxHeaderBytes} bytes`);
    const length = Math.min(Math.max(n, READ_CHUNK), this.size - position);
    const window = Buffer.allocUnsafe(length);
    const { bytesRead } = await this.file.read(window, 0, length, position);
    if (bytesRead < n) throw new GgufFormatError('Truncated GGUF header');
    this.#window = window.subarray(0, bytesRead);
    this.#start = position;
    this.#at = 0;
  }

  async bytes(n: number): Promise<Buffer> {
    await this.#ensure(n);
    const out = this.#window.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }

  async skip(n: number): Promise<void> {
    if (this.#window.length - this.#at >= n) {
      this.#at += n;
      return;
    }
    const target = this.position + n;
    if (target > this.size) throw new GgufFormatError('Truncated GGUF header');
    if (target > GGUF_LIMITS.maxHeaderBytes) throw new GgufFormatError(`GGUF header larger than ${GGUF_LIMITS.maxHeaderBytes} bytes`);
    this.#window = Buffer.alloc(0);
    this.#start = target;
    this.#at = 0;
  }

  async u32(): Promise<number> {
    return (await this.bytes(4)).readUInt32LE(0);
  }

  /** u64 as a number; header sizes, counts and dims never legitimately exceed 2^53. */
  async u64(what = 'size'): Promise<number> {
    const v = (await this.bytes(8)).readBigUInt64LE(0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufFormatError(`Implausible ${what} ${v}`);
    return Number(v);
  }

  async count(what: string, max: number): Promise<number> {
    const n = await this.u64(what);
    if (n > max) throw new GgufFormatError(`Too many ${what}: ${n} (at most ${max})`);
    return n;
  }

  async string(maxBytes: number, what: string): Promise<string> {
    const length = await this.u64(`${what} length`);
    if (length > maxBytes) throw new GgufFormatError(`A ${what} of ${length} bytes (at most ${maxBytes})`);
    return (await this.bytes(length)).toString('utf8');
  }

  /** Steps over `count` strings of an array without decoding them: the hot loop of vocabularies. */
  async skipStrings(count: number): Promise<void> {
    const max = GGUF_LIMITS.maxStringBytes;
    for (let i = 0; i < count; i++) {
      // Synchronously while the window holds the next string whole; the file only between windows.
      const window = this.#window;
      if (window.length - this.#at >= 8) {
        const length = Number(window.readBigUInt64LE(this.#at));
        if (length <= max && window.length - this.#at - 8 >= length) {
          this.#at += 8 + length;
          continue;
        }
      }
      const length = await this.u64('metadata string length');
      if (length > max) throw new GgufFormatError(`A metadata string of ${length} bytes (at most ${max})`);
      await this.skip(length);
    }
  }
}
