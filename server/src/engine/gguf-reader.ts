// Reads a GGUF file's header, metadata and tensor infos (never the tensor data), to describe a model
// (architecture, context length, parameter count, file type) and to vet uploads before llama.cpp sees them.
import { open } from 'node:fs/promises';
import { GgufValueType } from './gguf-writer.js';

export interface GgufTensorInfo {
  name: string;
  /** Contiguous-first, as stored. */
  dims: number[];
  /** ggml type name, e.g. "F16", "Q8_0", "Q4_K"; "TYPE_<id>" for ids this reader does not know. */
  type: string;
}

export interface GgufInfo {
  version: number;
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

export class GgufFormatError extends Error {
  override name = 'GgufFormatError';
}

// ggml_type ids -> names (ggml.h); gaps are types removed from ggml.
const GGML_TYPE_NAMES: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1',
  10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K',
  16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS',
  24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M', 30: 'BF16',
  34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
};

// llama_ftype ids -> names (llama.h), the value of `general.file_type`.
const LLAMA_FTYPE_NAMES: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 7: 'Q8_0', 8: 'Q5_0', 9: 'Q5_1',
  10: 'Q2_K', 11: 'Q3_K_S', 12: 'Q3_K_M', 13: 'Q3_K_L', 14: 'Q4_K_S', 15: 'Q4_K_M', 16: 'Q5_K_S', 17: 'Q5_K_M',
  18: 'Q6_K', 19: 'IQ2_XXS', 20: 'IQ2_XS', 21: 'Q2_K_S', 22: 'IQ3_XS', 23: 'IQ3_XXS', 24: 'IQ1_S', 25: 'IQ4_NL',
  26: 'IQ3_S', 27: 'IQ3_M', 28: 'IQ2_S', 29: 'IQ2_M', 30: 'IQ4_XS', 31: 'IQ1_M', 32: 'BF16',
  36: 'TQ1_0', 37: 'TQ2_0', 38: 'MXFP4_MOE',
};

// Bounds that no real model reaches; they keep a corrupt or hostile file from making us allocate wildly.
const MAX_STRING_BYTES = 16 * 1024 * 1024;
const MAX_ARRAY_LENGTH = 4 * 1024 * 1024;
const MAX_COUNT = 1_000_000;
const FIRST_READ = 1024 * 1024;
const MAX_HEADER_BYTES = 64 * 1024 * 1024;

export async function readGgufInfo(path: string): Promise<GgufInfo> {
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    if (size < 4) throw new GgufFormatError(`${path} is not a GGUF file (only ${size} bytes)`);
    // Parse synchronously from a prefix of the file; when the header turns out longer, read a bigger prefix
    // and start over. Headers are usually well under a few MB, so this is one or two reads.
    for (let length = Math.min(size, FIRST_READ); ; length = Math.min(size, length * 4)) {
      const prefix = Buffer.alloc(length);
      const { bytesRead } = await file.read(prefix, 0, length, 0);
      try {
        return parseHeader(new Cursor(prefix.subarray(0, bytesRead), bytesRead === size, path), path);
      } catch (error) {
        if (!(error instanceof NeedMoreData) || length >= size) throw error;
        if (length >= MAX_HEADER_BYTES) throw new GgufFormatError(`${path}: GGUF header larger than ${MAX_HEADER_BYTES} bytes`);
      }
    }
  } finally {
    await file.close();
  }
}

function parseHeader(reader: Cursor, path: string): GgufInfo {
  const magic = reader.bytes(4).toString('latin1');
  if (magic !== 'GGUF') {
    throw new GgufFormatError(`${path} is not a GGUF file (magic ${JSON.stringify(magic)}, expected "GGUF")`);
  }
  const version = reader.u32();
  // v1 used 32-bit counts and is long obsolete; llama.cpp itself no longer loads it.
  if (version !== 2 && version !== 3) throw new GgufFormatError(`${path}: unsupported GGUF version ${version}`);
  const tensorCount = reader.count('tensor count');
  const kvCount = reader.count('metadata count');

  const metadata: Record<string, unknown> = {};
  for (let i = 0; i < kvCount; i++) {
    const key = reader.string();
    metadata[key] = reader.value(reader.u32());
  }

  const tensors: GgufTensorInfo[] = [];
  let parameterCount = 0;
  for (let i = 0; i < tensorCount; i++) {
    const name = reader.string();
    const nDims = reader.u32();
    if (nDims < 1 || nDims > 4) throw new GgufFormatError(`${path}: tensor ${name} has ${nDims} dimensions`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(reader.u64());
    const typeId = reader.u32();
    reader.u64(); // data offset, relative to the data section
    tensors.push({ name, dims, type: GGML_TYPE_NAMES[typeId] ?? `TYPE_${typeId}` });
    parameterCount += dims.reduce((a, b) => a * b, 1);
  }

  const alignment = typeof metadata['general.alignment'] === 'number' ? metadata['general.alignment'] : 32;
  if (!Number.isInteger(alignment) || alignment <= 0) throw new GgufFormatError(`${path}: bad alignment ${alignment}`);
  const dataOffset = Math.ceil(reader.position / alignment) * alignment;

  const architecture = typeof metadata['general.architecture'] === 'string' ? metadata['general.architecture'] : undefined;
  const contextLength = architecture === undefined ? undefined : metadata[`${architecture}.context_length`];
  const fileTypeId = metadata['general.file_type'];
  return {
    version,
    metadata,
    tensors,
    architecture,
    contextLength: typeof contextLength === 'number' ? contextLength : undefined,
    parameterCount,
    fileType: typeof fileTypeId === 'number' ? (LLAMA_FTYPE_NAMES[fileTypeId] ?? `FTYPE_${fileTypeId}`) : undefined,
    alignment,
    dataOffset,
  };
}

/** Thrown when the header runs past the bytes read so far: the caller reads more and parses again. */
class NeedMoreData extends Error {}

/** Sequential little-endian reads over a prefix of the file. */
class Cursor {
  position = 0;

  constructor(
    private readonly buffer: Buffer,
    private readonly isWholeFile: boolean,
    private readonly path: string,
  ) {}

  bytes(n: number): Buffer {
    const end = this.position + n;
    if (end > this.buffer.length) {
      if (this.isWholeFile) throw new GgufFormatError(`${this.path}: truncated GGUF header`);
      throw new NeedMoreData();
    }
    const out = this.buffer.subarray(this.position, end);
    this.position = end;
    return out;
  }

  u32(): number {
    return this.bytes(4).readUInt32LE(0);
  }

  /** u64 as a number; header fields (lengths, counts, dims) never legitimately exceed 2^53. */
  u64(): number {
    const v = this.bytes(8).readBigUInt64LE(0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufFormatError(`${this.path}: implausible 64-bit size ${v}`);
    return Number(v);
  }

  count(what: string): number {
    const n = this.u64();
    if (n > MAX_COUNT) throw new GgufFormatError(`${this.path}: implausible ${what} ${n}`);
    return n;
  }

  string(): string {
    const length = this.u64();
    if (length > MAX_STRING_BYTES) throw new GgufFormatError(`${this.path}: string of ${length} bytes`);
    return this.bytes(length).toString('utf8');
  }

  value(type: number): unknown {
    switch (type) {
      case GgufValueType.UINT8: return this.bytes(1).readUInt8(0);
      case GgufValueType.INT8: return this.bytes(1).readInt8(0);
      case GgufValueType.UINT16: return this.bytes(2).readUInt16LE(0);
      case GgufValueType.INT16: return this.bytes(2).readInt16LE(0);
      case GgufValueType.UINT32: return this.bytes(4).readUInt32LE(0);
      case GgufValueType.INT32: return this.bytes(4).readInt32LE(0);
      case GgufValueType.FLOAT32: return this.bytes(4).readFloatLE(0);
      case GgufValueType.BOOL: return this.bytes(1).readUInt8(0) !== 0;
      case GgufValueType.STRING: return this.string();
      case GgufValueType.UINT64: return bigToNumber(this.bytes(8).readBigUInt64LE(0));
      case GgufValueType.INT64: return bigToNumber(this.bytes(8).readBigInt64LE(0));
      case GgufValueType.FLOAT64: return this.bytes(8).readDoubleLE(0);
      case GgufValueType.ARRAY: {
        const itemType = this.u32();
        if (itemType === GgufValueType.ARRAY) throw new GgufFormatError(`${this.path}: nested metadata arrays`);
        const length = this.u64();
        if (length > MAX_ARRAY_LENGTH) throw new GgufFormatError(`${this.path}: metadata array of ${length} items`);
        const items: unknown[] = [];
        for (let i = 0; i < length; i++) items.push(this.value(itemType));
        return items;
      }
      default:
        throw new GgufFormatError(`${this.path}: unknown metadata value type ${type}`);
    }
  }
}

/** 64-bit metadata integers become numbers when exact, bigints otherwise. */
function bigToNumber(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}
