import { MAD_A, MAD_B } from './trellis-code.js';

/**
 * The incoherence transform of quantize.trellis: Q = C·diag(σ) [n, n], C the orthonormal DCT-II
 * matrix and σ_j = ±1 from a hash of (seed, j). A trellis code has one scale per tensor and a
 * Gaussian codebook, so the weights must look i.i.d. Gaussian: W' = Q_out·W·Q_inᵀ spreads every
 * row's and column's magnitude over all of them (QuIP#, QTIP use a randomized Hadamard; the DCT
 * gives the same incoherence for any n, and 172 has no Hadamard matrix built by doubling).
 *
 * Both factors are computed, not stored: trellis-onnx.ts rebuilds Q from n and the seed with ONNX
 * integer and Cos ops, and this file computes the same float32 values, so the only difference
 * between pare's Ŵ and ORT's is float32 rounding in the products.
 */

const TWO31 = 2147483648;

/** seeds are < 2^11 and n < 2^16, so h = seed·2^16 + j < 2^27: h² < 2^54 and a·(h² mod 2^32) < 2^58 are exact in ONNX int64 */
export const MAX_ROTATION_SEED = 2047;

/**
 * σ_j ∈ {−1, 1}: the top bit of (a·(h² mod 2^32) + b) mod 2^32, h = seed·2^16 + j. The square is what
 * makes the signs random: the top bit of the plain LCG (a·h + b) mod 2^32 advances by a/2^32 ≈ 1/126
 * a step, so its signs were a square wave of period ~126 (a single sign change in 64) and every seed
 * the same wave shifted; a quadratic phase has no period, and its signs pass as fair coin flips (about
 * n/2 sign changes, a flat DCT spectrum, half the signs shared by any two seeds).
 */
export function rotationSigns(n: number, seed: number): Float32Array {
  const s = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    const h = seed * 65536 + j;
    // Math.imul: the low 32 bits of each product, exactly (h² and a·x exceed float64's 2^53)
    const x = (Math.imul(MAD_A, Math.imul(h, h)) + MAD_B) >>> 0;
    s[j] = x >= TWO31 ? -1 : 1;
  }
  return s;
}

/** Q [n, n] row-major, float32 as ORT builds it: α_i · cos(float32(((2j + 1)·i) mod 4n) · float32(π / 2n)) · σ_j. */
export function rotationMatrix(n: number, seed: number): Float32Array {
  const sign = rotationSigns(n, seed);
  const step = Math.fround(Math.PI / (2 * n));
  const a0 = Math.fround(Math.sqrt(1 / n));
  const a = Math.fround(Math.sqrt(2 / n));
  const Q = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    const alpha = i === 0 ? a0 : a;
    for (let j = 0; j < n; j++) {
      const angle = Math.fround(((2 * j + 1) * i) % (4 * n) * step);
      Q[i * n + j] = Math.fround(Math.fround(Math.fround(Math.cos(angle)) * alpha) * sign[j]!);
    }
  }
  return Q;
}
