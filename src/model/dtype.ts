/** ONNX TensorProto.DataType codes and their storage sizes. One table serves ONNX, safetensors and reports. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 17,
  FLOAT8E4M3FNUZ: 18,
  FLOAT8E5M2: 19,
  FLOAT8E5M2FNUZ: 20,
  UINT4: 21,
  INT4: 22,
  FLOAT4E2M1: 23,
} as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

interface DTypeInfo {
  name: string;
  /** storage bits per element; 4-bit types pack two elements per byte, low nibble first */
  bits: number;
}

const INFO: Record<number, DTypeInfo> = {
  1: { name: 'float32', bits: 32 },
  2: { name: 'uint8', bits: 8 },
  3: { name: 'int8', bits: 8 },
  4: { name: 'uint16', bits: 16 },
  5: { name: 'int16', bits: 16 },
  6: { name: 'int32', bits: 32 },
  7: { name: 'int64', bits: 64 },
  8: { name: 'string', bits: 0 },
  9: { name: 'bool', bits: 8 },
  10: { name: 'float16', bits: 16 },
  11: { name: 'float64', bits: 64 },
  12: { name: 'uint32', bits: 32 },
  13: { name: 'uint64', bits: 64 },
  14: { name: 'complex64', bits: 64 },
  15: { name: 'complex128', bits: 128 },
  16: { name: 'bfloat16', bits: 16 },
  17: { name: 'float8e4m3fn', bits: 8 },
  18: { name: 'float8e4m3fnuz', bits: 8 },
  19: { name: 'float8e5m2', bits: 8 },
  20: { name: 'float8e5m2fnuz', bits: 8 },
  21: { name: 'uint4', bits: 4 },
  22: { name: 'int4', bits: 4 },
  23: { name: 'float4e2m1', bits: 4 },
};

export function dtypeName(dt: number): string {
  return INFO[dt]?.name ?? `dtype(${dt})`;
}

export function dtypeBits(dt: number): number {
  const info = INFO[dt];
  if (!info) throw new Error(`unknown ONNX data type ${dt}`);
  return info.bits;
}

/** Bytes a dense tensor of `count` elements occupies as raw_data (4-bit types round up). */
export function byteLength(dt: number, count: number): number {
  return Math.ceil((count * dtypeBits(dt)) / 8);
}

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function dtypeFromName(name: string): number | undefined {
  for (const [code, info] of Object.entries(INFO)) if (info.name === name) return Number(code);
  return undefined;
}
