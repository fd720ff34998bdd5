import type * as tfjs from '@tensorflow/tfjs';
import { DataType, dtypeName } from '../../model/dtype.js';
import type { HostTensor } from '../../model/model.js';
import { packInt4, packUint4, toFloat32 } from '../../model/pack.js';
import { stridesOf } from '../../model/ndarray.js';
import type { Tf } from '../tf.js';
import { straightThrough } from './custom-grad.js';

/**
 * Fake quantization with a straight-through estimator (Bengio et al. 2013; as in QAT):
 *   forward  ŵ = (clip(round(w/s) + z, qmin, qmax) − z) · s
 *   backward ∂L/∂w = ∂L/∂ŵ
 * w is a float32 variable initialised to the dequantized weight, so ŵ equals the stored model's
 * dequantized weight until w moves; writeBack rounds w onto the same grid.
 */

const RANGES: Record<number, [number, number]> = {
  [DataType.INT8]: [-128, 127],
  [DataType.UINT8]: [0, 255],
  [DataType.INT4]: [-8, 7],
  [DataType.UINT4]: [0, 15],
  [DataType.INT16]: [-32768, 32767],
  [DataType.UINT16]: [0, 65535],
};

export function integerRange(dataType: number): [number, number] {
  const r = RANGES[dataType];
  if (!r) throw new Error(`fake quantization of ${dtypeName(dataType)} codes is not supported`);
  return r;
}

/**
 * The code range of the grid a tensor was quantized on, inside its storage container [qmin, qmax]:
 * a b-bit grid sits in a wider container (3 bits in MatMulNBits' or uint4's 4) either from the bottom
 * (asymmetric: [qmin, qmin + 2^b − 1]) or centred on the container's midpoint m = qmin + 2^(c−1)
 * (symmetric: [m − 2^(b−1), m + 2^(b−1) − 1]; src/quantize/emit.ts's layouts). The narrowest such
 * window holding every stored code and zero point is the grid: a min-max or clipped b-bit grid puts
 * some code on each end of its own window, so a wider grid is never read as a narrower one.
 */
export function gridWindow(codes: ArrayLike<number>, zero: ArrayLike<number>, qmin: number, qmax: number): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const a of [codes, zero]) {
    for (let i = 0; i < a.length; i++) {
      lo = Math.min(lo, a[i]!);
      hi = Math.max(hi, a[i]!);
    }
  }
  const width = qmax - qmin + 1;
  const mid = qmin + width / 2;
  for (let levels = 4; levels < width; levels *= 2) {
    if (lo >= qmin && hi <= qmin + levels - 1) return [qmin, qmin + levels - 1];
    if (lo >= mid - levels / 2 && hi <= mid + levels / 2 - 1) return [mid - levels / 2, mid + levels / 2 - 1];
  }
  return [qmin, qmax];
}

/** Round half to even, as ONNX QuantizeLinear and tf.round do. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The codes a float weight rounds to on a grid, in float32 arithmetic like the forward pass. */
export function quantizeCodes(w: Float32Array, scale: Float32Array, zero: Float32Array, qmin: number, qmax: number): Float32Array {
  const q = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) {
    const v = roundHalfEven(Math.fround(w[i]! / scale[i]!)) + zero[i]!;
    q[i] = Math.min(Math.max(v, qmin), qmax);
  }
  return q;
}

/** Codes as the raw bytes of an ONNX integer tensor type. */
export function encodeCodes(dataType: number, q: Float32Array): Uint8Array {
  switch (dataType) {
    case DataType.INT8:
      return new Uint8Array(Int8Array.from(q).buffer);
    case DataType.UINT8:
      return Uint8Array.from(q);
    case DataType.INT16:
      return new Uint8Array(Int16Array.from(q).buffer);
    case DataType.UINT16:
      return new Uint8Array(Uint16Array.from(q).buffer);
    case DataType.INT4:
      return packInt4(q);
    case DataType.UINT4:
      return packUint4(q);
    default:
      throw new Error(`cannot encode codes as ${dtypeName(dataType)}`);
  }
}

/**
 * For each element of a tensor of `dims`, the index of its DequantizeLinear scale: per tensor (0),
 * per axis (1-D scale) or blocked (scale of x's rank, `block` elements per scale along `axis`).
 */
export function scaleIndex(dims: number[], scaleDims: number[], axis: number, block: number): Int32Array {
  const n = dims.reduce((a, b) => a * b, 1);
  const out = new Int32Array(n);
  const scaleCount = scaleDims.reduce((a, b) => a * b, 1);
  if (scaleCount === 1) return out;
  const rank = dims.length;
  const ax = axis < 0 ? axis + rank : axis;
  const strides = stridesOf(dims);
  if (scaleDims.length <= 1) {
    for (let i = 0; i < n; i++) out[i] = Math.floor(i / strides[ax]!) % dims[ax]!;
    return out;
  }
  const sStrides = stridesOf(scaleDims);
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < n; i++) {
    let si = 0;
    for (let d = 0; d < rank; d++) si += (d === ax ? Math.floor(idx[d]! / block) : idx[d]!) * sStrides[d]!;
    out[i] = si;
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d]! < dims[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}

/** A trainable quantized weight: the float variable, its grid, and how to store it back. */
export class FakeQuantWeight {
  readonly variable: tfjs.Variable;
  private readonly scaleT: tfjs.Tensor;
  private readonly zeroT: tfjs.Tensor;

  constructor(
    private readonly tf: Tf,
    /** the initializer holding the codes */
    readonly name: string,
    /** the variable's shape (the dequantized weight's) */
    readonly shape: number[],
    readonly scale: Float32Array,
    readonly zero: Float32Array,
    readonly qmin: number,
    readonly qmax: number,
    codes: Float32Array,
    /** stores codes [shape] into the model's own tensor layout */
    readonly encode: (codes: Float32Array) => HostTensor,
  ) {
    const w = new Float32Array(codes.length);
    for (let i = 0; i < w.length; i++) w[i] = (codes[i]! - zero[i]!) * scale[i]!;
    this.variable = tf.variable(tf.tensor(w, shape, 'float32'), true, `fq/${name}`);
    this.scaleT = tf.keep(tf.tensor(scale, shape, 'float32'));
    this.zeroT = tf.keep(tf.tensor(zero, shape, 'float32'));
  }

  /** ŵ = w + stopGradient(qdq(w) − w) */
  forward(): tfjs.Tensor {
    const tf = this.tf;
    return straightThrough(tf, this.variable, (w) => {
      const q = tf.clipByValue(tf.add(tf.round(tf.div(w, this.scaleT)), this.zeroT), this.qmin, this.qmax);
      return tf.mul(tf.sub(q, this.zeroT), this.scaleT);
    });
  }

  /** The variable's current value requantized onto the grid, in the model's storage form. */
  quantized(): HostTensor {
    const w = this.variable.dataSync() as Float32Array;
    return this.encode(quantizeCodes(w, this.scale, this.zero, this.qmin, this.qmax));
  }

  dispose(): void {
    this.variable.dispose();
    this.scaleT.dispose();
    this.zeroT.dispose();
  }
}

/** Per-element scale / zero point arrays of a DequantizeLinear's (scale, zero point) tensors. */
export function expandGrid(dims: number[], scale: HostTensor, zero: HostTensor | undefined, axis: number, block: number): { scale: Float32Array; zero: Float32Array } {
  const map = scaleIndex(dims, scale.dims, axis, block);
  const s = toFloat32(scale.dataType, scale.data, scale.dims.reduce((a, b) => a * b, 1));
  const z = zero ? toFloat32(zero.dataType, zero.data, zero.dims.reduce((a, b) => a * b, 1)) : undefined;
  return { scale: Float32Array.from(map, (i) => s[i]!), zero: Float32Array.from(map, (i) => (z ? z[i]! : 0)) };
}
