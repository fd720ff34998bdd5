import { DataType } from '../../model/dtype.js';
import { toFloat32 } from '../../model/pack.js';

/**
 * com.microsoft.MatMulNBits weight layout, as src/quantize/emit.ts writes it: B is uint8
 * [N, ceil(K/block), block·bits/8] with 4-bit codes packed low nibble first along K (2-bit codes four
 * to a byte, low bits first); scales
 * [N·kBlocks]; zero points (optional, default 2^(bits−1)) packed the same way, ceil(kBlocks·bits/8)
 * bytes per row, or floats [N·kBlocks]. Decoded here into per-element codes, scales and zero points over W [N, K].
 */
export interface NBitsLayout {
  N: number;
  K: number;
  bits: number;
  block: number;
}

export interface NBitsDecoded {
  /** codes q [N, K], row-major */
  codes: Float32Array;
  /** per-element scale and zero point over [N, K] */
  scale: Float32Array;
  zero: Float32Array;
}

function readCode(bytes: Uint8Array, index: number, bits: number): number {
  if (bits === 8) return bytes[index]!;
  if (bits === 2) return (bytes[index >> 2]! >> ((index & 3) << 1)) & 3;
  const b = bytes[index >> 1]!;
  return index & 1 ? b >> 4 : b & 15;
}

/** Zero points as stored: packed integer codes (uint8 bytes), or floats of the scales' type ([N·kBlocks], quantize's float_zero_points). */
export function storedZeroPoints(t: { dataType: number; data: Uint8Array; dims: number[] }): Uint8Array | Float32Array {
  return t.dataType === DataType.UINT8 ? t.data : toFloat32(t.dataType, t.data, t.dims.reduce((a, b) => a * b, 1));
}

export function decodeNBits(B: Uint8Array, scales: Float32Array, zeros: Uint8Array | Float32Array | undefined, l: NBitsLayout): NBitsDecoded {
  if (l.bits !== 2 && l.bits !== 4 && l.bits !== 8) throw new Error(`MatMulNBits with bits=${l.bits} is not supported (2, 4 or 8)`);
  const kBlocks = Math.ceil(l.K / l.block);
  const rowCodes = kBlocks * l.block;
  const zpPerRow = Math.ceil((kBlocks * l.bits) / 8);
  const codes = new Float32Array(l.N * l.K);
  const scale = new Float32Array(l.N * l.K);
  const zero = new Float32Array(l.N * l.K);
  const fallbackZero = 2 ** (l.bits - 1);
  for (let n = 0; n < l.N; n++) {
    for (let k = 0; k < l.K; k++) {
      const j = Math.floor(k / l.block);
      const i = n * l.K + k;
      codes[i] = readCode(B, n * rowCodes + k, l.bits);
      scale[i] = scales[n * kBlocks + j]!;
      zero[i] = !zeros ? fallbackZero : zeros instanceof Float32Array ? zeros[n * kBlocks + j]! : readCode(zeros.subarray(n * zpPerRow, (n + 1) * zpPerRow), j, l.bits);
    }
  }
  return { codes, scale, zero };
}

/** Codes [N, K] back into B's packed layout; the padding codes of a partial last block are `pad[n]` (0 when absent). */
export function encodeNBits(codes: ArrayLike<number>, l: NBitsLayout, pad?: ArrayLike<number>): Uint8Array {
  const kBlocks = Math.ceil(l.K / l.block);
  const rowCodes = kBlocks * l.block;
  const out = new Uint8Array((l.N * rowCodes * l.bits) / 8);
  for (let n = 0; n < l.N; n++) {
    for (let k = 0; k < rowCodes; k++) {
      const q = k < l.K ? codes[n * l.K + k]! : (pad?.[n] ?? 0);
      const index = n * rowCodes + k;
      if (l.bits === 8) out[index] = q;
      else if (l.bits === 2) out[index >> 2] |= q << ((index & 3) << 1);
      else out[index >> 1] |= index & 1 ? q << 4 : q;
    }
  }
  return out;
}
