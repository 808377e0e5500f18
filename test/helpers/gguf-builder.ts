/**
 * A small GGUF v3 byte builder for hostile files: every field exactly as given, however wrong
 * (the project's writer refuses to write such files). Used by the model validation tests and by
 * bench/attack-inputs.ts.
 */
import { GgufValueType } from '../../server/src/engine/gguf-writer.js';

export interface GgufTensorSpecRaw {
  name: string;
  dims: (number | bigint)[];
  type: number;
  offset: number | bigint;
}

/** A GGUF v3 file: `general.architecture` (unless null), u8 arrays of the given lengths, the tensor table as given, then `dataBytes` of data. */
export function buildGguf(options: { tensors?: GgufTensorSpecRaw[]; arrays?: { key: string; length: number }[]; dataBytes?: number; architecture?: string | null } = {}): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    parts.push(b);
  };
  const u64 = (v: number | bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    parts.push(b);
  };
  const str = (s: string) => {
    u64(Buffer.byteLength(s));
    parts.push(Buffer.from(s));
  };
  const tensors = options.tensors ?? [{ name: 'token_embd.weight', dims: [32, 4], type: 0, offset: 0 }];
  const arrays = options.arrays ?? [];
  const architecture = options.architecture === undefined ? 'llama' : options.architecture;
  parts.push(Buffer.from('GGUF'));
  u32(3);
  u64(tensors.length);
  u64(arrays.length + (architecture === null ? 0 : 1));
  if (architecture !== null) {
    str('general.architecture');
    u32(GgufValueType.STRING);
    str(architecture);
  }
  for (const array of arrays) {
    str(array.key);
    u32(GgufValueType.ARRAY);
    u32(GgufValueType.UINT8);
    u64(array.length);
    parts.push(Buffer.alloc(array.length, 1));
  }
  for (const tensor of tensors) {
    str(tensor.name);
    u32(tensor.dims.length);
    for (const dim of tensor.dims) u64(dim);
    u32(tensor.type);
    u64(tensor.offset);
  }
  const header = Buffer.concat(parts);
  const padded = Math.ceil(header.length / 32) * 32;
  return Buffer.concat([header, Buffer.alloc(padded - header.length), Buffer.alloc(options.dataBytes ?? 32 * 4 * 4)]);
}
