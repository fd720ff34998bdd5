import { DataType } from '../../model/dtype.js';
import type { HostTensor } from '../../model/model.js';
import { toFloat32, typedView } from '../../model/pack.js';
import { stridesOf } from '../../model/ndarray.js';

/**
 * Small arrays kept on the host for the graph's shape arithmetic (Shape → Gather → Concat → Reshape
 * chains), where a tfjs kernel launch per scalar would cost more than the arithmetic. int64 values
 * live as int32 (tfjs has no int64); bool as 0/1 bytes.
 */
export type HostDType = 'float32' | 'int32' | 'bool';
type HostData = Float32Array | Int32Array | Uint8Array;

const INT32_MAX = 2 ** 31 - 1;

export class HostArray {
  constructor(
    readonly dtype: HostDType,
    readonly shape: number[],
    readonly data: HostData,
  ) {}

  get size(): number {
    return this.data.length;
  }

  numbers(): number[] {
    return Array.from(this.data);
  }
}

export function hostOf(dtype: HostDType, shape: number[], values: ArrayLike<number>): HostArray {
  const Ctor = dtype === 'float32' ? Float32Array : dtype === 'int32' ? Int32Array : Uint8Array;
  return new HostArray(dtype, shape, Ctor.from(values));
}

/** The host dtype an ONNX type lands in: every float kind as float32, every integer kind as int32. */
export function hostDType(onnxType: number): HostDType {
  if (onnxType === DataType.BOOL) return 'bool';
  if (onnxType === DataType.FLOAT || onnxType === DataType.FLOAT16 || onnxType === DataType.BFLOAT16 || onnxType === DataType.DOUBLE) return 'float32';
  return 'int32';
}

/** Decode an initializer; int64 values outside int32 (INT64_MAX as "to the end" in Slice) are clamped. */
export function decodeTensor(t: HostTensor): HostArray {
  const dtype = hostDType(t.dataType);
  const count = t.dims.reduce((a, b) => a * b, 1);
  if (dtype === 'float32') return new HostArray(dtype, t.dims, toFloat32(t.dataType, t.data, count));
  if (dtype === 'bool') return new HostArray(dtype, t.dims, Uint8Array.from(t.data.subarray(0, count)));
  if (t.dataType === DataType.INT64 || t.dataType === DataType.UINT64) {
    const v = typedView(t.dataType, t.data) as BigInt64Array;
    const out = new Int32Array(count);
    for (let i = 0; i < count; i++) out[i] = Number(v[i]! > BigInt(INT32_MAX) ? INT32_MAX : v[i]! < BigInt(-INT32_MAX) ? -INT32_MAX : v[i]!);
    return new HostArray(dtype, t.dims, out);
  }
  return new HostArray(dtype, t.dims, Int32Array.from(toFloat32(t.dataType, t.data, count)));
}

export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`shapes [${a.join(',')}] and [${b.join(',')}] do not broadcast`);
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** For each flat index of `outShape`, the flat index into an array of `shape` broadcast to it. */
function broadcastIndex(shape: readonly number[], outShape: readonly number[]): Int32Array {
  const n = outShape.reduce((a, b) => a * b, 1);
  const rank = outShape.length;
  const src = stridesOf([...shape]);
  const strides = outShape.map((_, d) => {
    const sd = d - (rank - shape.length);
    return sd < 0 || shape[sd] === 1 ? 0 : src[sd]!;
  });
  const out = new Int32Array(n);
  const idx = new Array<number>(rank).fill(0);
  let s = 0;
  for (let i = 0; i < n; i++) {
    out[i] = s;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      s += strides[d]!;
      if (idx[d]! < outShape[d]!) break;
      s -= strides[d]! * idx[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

export function mapArrays(arrays: HostArray[], dtype: HostDType, fn: (...v: number[]) => number): HostArray {
  const shape = arrays.reduce<number[]>((s, a) => broadcastShapes(s, a.shape), []);
  const maps = arrays.map((a) => broadcastIndex(a.shape, shape));
  const n = shape.reduce((a, b) => a * b, 1);
  const vals = new Array<number>(arrays.length);
  const out = dtype === 'float32' ? new Float32Array(n) : dtype === 'int32' ? new Int32Array(n) : new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < arrays.length; k++) vals[k] = arrays[k]!.data[maps[k]![i]!]!;
    out[i] = fn(...vals);
  }
  return new HostArray(dtype, shape, out);
}

export function expandHost(a: HostArray, shape: number[]): HostArray {
  return mapBroadcast(a, broadcastShapes(a.shape, shape));
}

function mapBroadcast(a: HostArray, shape: number[]): HostArray {
  const map = broadcastIndex(a.shape, shape);
  const out = a.dtype === 'float32' ? new Float32Array(map.length) : a.dtype === 'int32' ? new Int32Array(map.length) : new Uint8Array(map.length);
  for (let i = 0; i < map.length; i++) out[i] = a.data[map[i]!]!;
  return new HostArray(a.dtype, shape, out);
}

export function castHost(a: HostArray, dtype: HostDType): HostArray {
  if (dtype === a.dtype) return a;
  if (dtype === 'float32') return new HostArray(dtype, a.shape, Float32Array.from(a.data));
  if (dtype === 'int32') return new HostArray(dtype, a.shape, Int32Array.from(a.data, (v) => Math.trunc(v)));
  return new HostArray(dtype, a.shape, Uint8Array.from(a.data, (v) => (v !== 0 ? 1 : 0)));
}

export function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

export function gatherHost(a: HostArray, idx: HostArray, axis: number): HostArray {
  const ax = normAxis(axis, a.shape.length);
  const pre = a.shape.slice(0, ax).reduce((x, y) => x * y, 1);
  const n = a.shape[ax]!;
  const post = a.shape.slice(ax + 1).reduce((x, y) => x * y, 1);
  const I = idx.size;
  const out = a.dtype === 'float32' ? new Float32Array(pre * I * post) : a.dtype === 'int32' ? new Int32Array(pre * I * post) : new Uint8Array(pre * I * post);
  for (let p = 0; p < pre; p++) {
    for (let i = 0; i < I; i++) {
      let j = idx.data[i]!;
      if (j < 0) j += n;
      for (let q = 0; q < post; q++) out[(p * I + i) * post + q] = a.data[(p * n + j) * post + q]!;
    }
  }
  return new HostArray(a.dtype, [...a.shape.slice(0, ax), ...idx.shape, ...a.shape.slice(ax + 1)], out);
}

export function concatHost(arrays: HostArray[], axis: number): HostArray {
  const first = arrays[0]!;
  const ax = normAxis(axis, first.shape.length);
  const pre = first.shape.slice(0, ax).reduce((x, y) => x * y, 1);
  const posts = arrays.map((a) => a.shape.slice(ax).reduce((x, y) => x * y, 1));
  const width = posts.reduce((x, y) => x + y, 0);
  const out = first.dtype === 'float32' ? new Float32Array(pre * width) : first.dtype === 'int32' ? new Int32Array(pre * width) : new Uint8Array(pre * width);
  let off = 0;
  arrays.forEach((a, k) => {
    for (let p = 0; p < pre; p++) out.set(a.data.subarray(p * posts[k]!, (p + 1) * posts[k]!), p * width + off);
    off += posts[k]!;
  });
  const shape = [...first.shape];
  shape[ax] = arrays.reduce((s, a) => s + a.shape[ax]!, 0);
  return new HostArray(first.dtype, shape, out);
}

/** ONNX Slice bounds resolved against `shape`: one [start, size, step] per dimension. */
export function sliceBounds(shape: number[], starts: number[], ends: number[], axes: number[] | undefined, steps: number[] | undefined): { begin: number[]; end: number[]; step: number[] } {
  const begin = shape.map(() => 0);
  const end = [...shape];
  const step = shape.map(() => 1);
  starts.forEach((s, k) => {
    const ax = normAxis(axes ? axes[k]! : k, shape.length);
    const dim = shape[ax]!;
    const st = steps ? steps[k]! : 1;
    if (st <= 0) throw new Error(`Slice with step ${st} is not supported`);
    const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + dim : v, 0), dim);
    begin[ax] = clamp(s);
    end[ax] = Math.max(clamp(ends[k]!), begin[ax]!);
    step[ax] = st;
  });
  return { begin, end, step };
}

export function sliceHost(a: HostArray, b: { begin: number[]; end: number[]; step: number[] }): HostArray {
  const shape = b.begin.map((s, d) => Math.ceil((b.end[d]! - s) / b.step[d]!));
  const n = shape.reduce((x, y) => x * y, 1);
  const strides = stridesOf(a.shape);
  const out = a.dtype === 'float32' ? new Float32Array(n) : a.dtype === 'int32' ? new Int32Array(n) : new Uint8Array(n);
  const idx = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let src = 0;
    for (let d = 0; d < shape.length; d++) src += (b.begin[d]! + idx[d]! * b.step[d]!) * strides[d]!;
    out[i] = a.data[src]!;
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  return new HostArray(a.dtype, shape, out);
}

/** ONNX Reshape's target: 0 copies the input dimension (unless allowzero), −1 is inferred. */
export function reshapeTarget(inShape: number[], spec: number[], allowZero = false): number[] {
  const out = spec.map((d, i) => (d === 0 && !allowZero ? inShape[i]! : d));
  const known = out.reduce((a, d) => (d === -1 ? a : a * d), 1);
  const total = inShape.reduce((a, b) => a * b, 1);
  return out.map((d) => (d === -1 ? total / known : d));
}
