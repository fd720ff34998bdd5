/**
 * Uniform affine quantization of a weight matrix W [rows = out, cols = in] (float32), in groups of
 * `groupSize` consecutive inputs of a row: w ≈ scale · (q − zero), q ∈ [0, 2^bits − 1].
 * Symmetric grids fix zero = 2^(bits−1) and scale = max|w| / (2^(bits−1) − 1), so q − zero is a
 * signed value in ±(2^(bits−1) − 1) (int8 [−127, 127], int4 [−7, 7]); asymmetric grids map
 * [min, max] (always including 0) onto [0, 2^bits − 1]. Optional MSE clipping shrinks the range
 * to the factor that gives the group's lowest Σ c_j·|w_j − ŵ_j|^2.4 (GPTQ reference
 * `find_params(mse=True)`, llama.cpp's search on the scale), c_j an optional per-input weight.
 */

import { f16BitsToF32Bits, f32BitsToF16Bits } from '../model/pack.js';

/** Which weights share a scale: the whole tensor, each output row, or `size` consecutive inputs of a row. */
export type Granularity = { kind: 'tensor' } | { kind: 'channel' } | { kind: 'group'; size: number };

export interface GridSpec {
  bits: number;
  granularity: Granularity;
  symmetric: boolean;
  /** search shrink factors 1, 0.99, …, 0.21 of the range for the lowest error */
  mseClip?: boolean;
  /** per input column, the weight of its error in the clipping search (GPTQ: the Hessian diagonal, E[x_j²]) */
  clipWeights?: Float32Array;
  /** how scales are stored (float32 unless said): codes are chosen against the stored value */
  scaleDtype?: ScaleDtype;
}

export type ScaleDtype = 'float32' | 'float16';

/** float16's largest finite value and smallest positive (subnormal) one */
const F16_MAX = 65504;
const F16_MIN = 2 ** -24;
const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/** A scale as stored: rounded to float32, or to float16 with its magnitude clamped into float16's positive range (so it never becomes 0 or ∞). */
export function storedScale(s: number, dtype: ScaleDtype = 'float32'): number {
  if (dtype === 'float32') return Math.fround(s);
  f32[0] = Math.sign(s || 1) * Math.min(Math.max(Math.abs(s), F16_MIN), F16_MAX);
  f32Bits[0] = f16BitsToF32Bits(f32BitsToF16Bits(f32Bits[0]!));
  return f32[0]!;
}

export interface QuantizedMatrix {
  rows: number;
  cols: number;
  bits: number;
  /** effective group length along the input dimension (cols for per-channel) */
  groupSize: number;
  symmetric: boolean;
  /** unsigned codes, rows × cols */
  q: Uint8Array;
  /** rows × groups (per-tensor: 1 value repeated per row) */
  scales: Float32Array;
  /** rows × groups, integer zero points in code space */
  zeros: Uint8Array;
  /** rows × groups, float zero points in code space (MatMulNBits' zero_points in the scales' type); they replace `zeros` when present */
  floatZeros?: Float32Array;
}

/** Inputs per stored scale; per-tensor shares one scale, stored once per row. */
export function groupLength(granularity: Granularity, cols: number): number {
  return granularity.kind === 'group' ? granularity.size : cols;
}

/** Scale and zero point of one group given its min and max. */
export function groupParams(min: number, max: number, bits: number, symmetric: boolean): { scale: number; zero: number } {
  const levels = 2 ** bits - 1;
  if (symmetric) {
    const half = 2 ** (bits - 1);
    const amax = Math.max(Math.abs(min), Math.abs(max));
    return { scale: amax > 0 ? amax / (half - 1) : 1, zero: half };
  }
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  if (hi === lo) return { scale: 1, zero: 0 };
  const scale = (hi - lo) / levels;
  return { scale, zero: Math.min(levels, Math.max(0, Math.round(-lo / scale))) };
}

export function quantizeValue(w: number, scale: number, zero: number, bits: number): number {
  const q = Math.round(w / scale) + zero;
  return q < 0 ? 0 : q > 2 ** bits - 1 ? 2 ** bits - 1 : q;
}

const GRID_STEPS = 100;
const MAX_SHRINK = 0.8;
const MSE_NORM = 2.4;

function rangeOf(W: Float32Array, start: number, len: number): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = start; i < start + len; i++) {
    const v = W[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max };
}

/**
 * The group's grid after the clipping search: shrink factors 1, 0.99, …, 0.21 applied to min and max,
 * keeping the one with the lowest Σ c_j·|w_j − ŵ_j|^2.4 (c_j = `spec.clipWeights` of the group's
 * input column, 1 without). The exponent is GPTQ's reference `find_params(mse=True, norm=2.4)`.
 */
function clippedParams(W: Float32Array, start: number, len: number, min: number, max: number, spec: GridSpec, cols: number): { scale: number; zero: number } {
  let best = groupParams(min, max, spec.bits, spec.symmetric);
  if (!spec.mseClip) return best;
  const c = spec.clipWeights;
  let bestErr = Infinity;
  for (let i = 0; i < CLIP_CANDIDATES; i++) {
    const cand = clipCandidate(min, max, i, spec);
    let err = 0;
    for (let k = start; k < start + len; k++) {
      const w = W[k]!;
      const e = Math.abs(cand.scale * (quantizeValue(w, cand.scale, cand.zero, spec.bits) - cand.zero) - w) ** MSE_NORM;
      err += c ? c[k % cols]! * e : e;
    }
    if (err < bestErr) [best, bestErr] = [cand, err];
  }
  return best;
}

/** How many candidates the clipping search tries. */
export const CLIP_CANDIDATES = GRID_STEPS * MAX_SHRINK;

/** Candidate i of the clipping search: the range shrunk by 1 − i/100, its scale rounded as stored. */
export function clipCandidate(min: number, max: number, i: number, spec: Pick<GridSpec, 'bits' | 'symmetric' | 'scaleDtype'>): { scale: number; zero: number } {
  const p = 1 - i / GRID_STEPS;
  const cand = groupParams(p * min, p * max, spec.bits, spec.symmetric);
  return { scale: storedScale(cand.scale, spec.scaleDtype), zero: cand.zero };
}

/** Groups per row: the last one is shorter when the group size does not divide the inputs. */
export function groupCount(cols: number, g: number): number {
  return Math.ceil(cols / g);
}

/** Length of group k of a row of `cols` inputs in groups of `g`. */
export function groupSpan(k: number, cols: number, g: number): number {
  return Math.min(g, cols - k * g);
}

/** Scale and zero point of every (row, group) of W [rows, cols], rows × groups each. */
export function gridParams(W: Float32Array, rows: number, cols: number, spec: GridSpec): { scales: Float32Array; zeros: Uint8Array } {
  const g = groupLength(spec.granularity, cols);
  const groups = groupCount(cols, g);
  const scales = new Float32Array(rows * groups);
  const zeros = new Uint8Array(rows * groups);
  const tensor = spec.granularity.kind === 'tensor' ? rangeOf(W, 0, W.length) : undefined;
  const tensorParams = tensor ? clippedParams(W, 0, W.length, tensor.min, tensor.max, spec, cols) : undefined;
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < groups; k++) {
      let p = tensorParams;
      if (!p) {
        const start = r * cols + k * g;
        const len = groupSpan(k, cols, g);
        const { min, max } = rangeOf(W, start, len);
        p = clippedParams(W, start, len, min, max, spec, cols);
      }
      scales[r * groups + k] = storedScale(p.scale, spec.scaleDtype);
      zeros[r * groups + k] = p.zero;
    }
  }
  return { scales, zeros };
}

/** Quantize W [rows, cols] onto the grid; a last group shorter than the group size has its own scale. */
export function quantizeMatrix(W: Float32Array, rows: number, cols: number, spec: GridSpec): QuantizedMatrix {
  const g = groupLength(spec.granularity, cols);
  const groups = groupCount(cols, g);
  const { scales, zeros } = gridParams(W, rows, cols, spec);
  const q = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      const k = r * groups + Math.floor(j / g);
      q[r * cols + j] = quantizeValue(W[r * cols + j]!, scales[k]!, zeros[k]!, spec.bits);
    }
  }
  return { rows, cols, bits: spec.bits, groupSize: g, symmetric: spec.symmetric, q, scales, zeros };
}

/** The code of w on a grid with a float zero point z (code space): round(w / scale + z), clamped. */
export function quantizeValueFloatZero(w: number, scale: number, z: number, bits: number): number {
  const q = Math.round(w / scale + z);
  return q < 0 ? 0 : q > 2 ** bits - 1 ? 2 ** bits - 1 : q;
}

/** ŵ = scale · (q − zero), float32, exactly as DequantizeLinear/MatMulNBits compute it (float zero points: q − zero in float32 first, as MatMulNBits does). */
export function dequantizeMatrix(m: QuantizedMatrix): Float32Array {
  const out = new Float32Array(m.rows * m.cols);
  const groups = groupCount(m.cols, m.groupSize);
  const zeros = m.floatZeros ?? m.zeros;
  for (let r = 0; r < m.rows; r++) {
    for (let k = 0; k < groups; k++) {
      const s = m.scales[r * groups + k]!;
      const z = zeros[r * groups + k]!;
      const start = r * m.cols + k * m.groupSize;
      for (let i = start; i < start + groupSpan(k, m.cols, m.groupSize); i++) out[i] = Math.fround(Math.fround(m.q[i]! - z) * s);
    }
  }
  return out;
}
