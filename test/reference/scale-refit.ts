/**
 * Float64 plain-loop reference of the scale refit: with the codes fixed, the row's dequantized weight
 * is A·s (A[k, g] = q_k − z_g for k in group g, else 0), and the scales minimising
 * (w − A·s)ᵀ H (w − A·s) solve (AᵀHA)·s = AᵀH·w. A is built explicitly and the system solved by
 * Gaussian elimination with partial pivoting; independent of src/quantize/refit.ts.
 */
import { seededRandom } from '../../src/util/random.js';
import { gramRef } from './matmul.js';
export function refitRowRef(w: ArrayLike<number>, q: ArrayLike<number>, zeros: ArrayLike<number>, group: number, H: ArrayLike<number>): Float64Array {
  const n = w.length;
  const G = zeros.length;
  const A = new Float64Array(n * G);
  for (let k = 0; k < n; k++) A[k * G + Math.floor(k / group)] = q[k]! - zeros[Math.floor(k / group)]!;
  const HA = new Float64Array(n * G);
  for (let i = 0; i < n; i++) for (let g = 0; g < G; g++) for (let k = 0; k < n; k++) HA[i * G + g] += H[i * n + k]! * A[k * G + g]!;
  const M = new Float64Array(G * (G + 1));
  for (let g = 0; g < G; g++) {
    for (let h = 0; h < G; h++) for (let k = 0; k < n; k++) M[g * (G + 1) + h] += A[k * G + g]! * HA[k * G + h]!;
    for (let k = 0; k < n; k++) for (let l = 0; l < n; l++) M[g * (G + 1) + G] += A[k * G + g]! * H[k * n + l]! * w[l]!;
  }
  // forward elimination with partial pivoting on the augmented [M | b]
  for (let c = 0; c < G; c++) {
    let p = c;
    for (let r = c + 1; r < G; r++) if (Math.abs(M[r * (G + 1) + c]!) > Math.abs(M[p * (G + 1) + c]!)) p = r;
    for (let j = 0; j <= G; j++) [M[c * (G + 1) + j], M[p * (G + 1) + j]] = [M[p * (G + 1) + j]!, M[c * (G + 1) + j]!];
    for (let r = c + 1; r < G; r++) {
      const f = M[r * (G + 1) + c]! / M[c * (G + 1) + c]!;
      for (let j = c; j <= G; j++) M[r * (G + 1) + j] -= f * M[c * (G + 1) + j]!;
    }
  }
  const s = new Float64Array(G);
  for (let r = G - 1; r >= 0; r--) {
    let v = M[r * (G + 1) + G]!;
    for (let j = r + 1; j < G; j++) v -= M[r * (G + 1) + j]! * s[j]!;
    s[r] = v / M[r * (G + 1) + r]!;
  }
  return s;
}

/** (w − ŵ)ᵀ H (w − ŵ) in float64 */
export function hWeightedError(w: ArrayLike<number>, wq: ArrayLike<number>, H: ArrayLike<number>): number {
  const n = w.length;
  let e = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) e += (w[i]! - wq[i]!) * H[i * n + j]! * (w[j]! - wq[j]!);
  return e;
}

/**
 * Float64 plain-loop reference of the joint scale and offset refit: with the codes fixed, ŵ_k =
 * q_k·s_g + t_g is B·θ (B[k, g] = q_k, B[k, G + g] = 1 for k in group g), and θ = [s; t] solves
 * (BᵀHB)·θ = BᵀH·w. Returns θ; independent of src/quantize/refit-offset.ts.
 */
export function refitOffsetRowRef(w: ArrayLike<number>, q: ArrayLike<number>, G: number, group: number, H: ArrayLike<number>): Float64Array {
  const n = w.length;
  const P = 2 * G;
  const B = new Float64Array(n * P);
  for (let k = 0; k < n; k++) {
    const g = Math.floor(k / group);
    B[k * P + g] = q[k]!;
    B[k * P + G + g] = 1;
  }
  const M = new Float64Array(P * (P + 1));
  for (let a = 0; a < P; a++) {
    for (let b = 0; b < P; b++) for (let k = 0; k < n; k++) for (let l = 0; l < n; l++) M[a * (P + 1) + b] += B[k * P + a]! * H[k * n + l]! * B[l * P + b]!;
    for (let k = 0; k < n; k++) for (let l = 0; l < n; l++) M[a * (P + 1) + P] += B[k * P + a]! * H[k * n + l]! * w[l]!;
  }
  return gaussSolve(M, P);
}

/** x with M[:, :P]·x = M[:, P] (augmented P × (P + 1)), Gaussian elimination with partial pivoting. */
function gaussSolve(M: Float64Array, P: number): Float64Array {
  const W = P + 1;
  for (let c = 0; c < P; c++) {
    let p = c;
    for (let r = c + 1; r < P; r++) if (Math.abs(M[r * W + c]!) > Math.abs(M[p * W + c]!)) p = r;
    for (let j = 0; j <= P; j++) [M[c * W + j], M[p * W + j]] = [M[p * W + j]!, M[c * W + j]!];
    for (let r = c + 1; r < P; r++) {
      const f = M[r * W + c]! / M[c * W + c]!;
      for (let j = c; j <= P; j++) M[r * W + j] -= f * M[c * W + j]!;
    }
  }
  const x = new Float64Array(P);
  for (let r = P - 1; r >= 0; r--) {
    let v = M[r * W + P]!;
    for (let j = r + 1; j < P; j++) v -= M[r * W + j]! * x[j]!;
    x[r] = v / M[r * W + r]!;
  }
  return x;
}

/**
 * A test layer for the refits: W [rows, cols] (uniform in ±1, a tenth of it ×3, plus `offset`) and
 * XᵀX of `samples` correlated inputs (each input mixes its neighbour), float64.
 */
export function correlatedLayer(rows: number, cols: number, samples: number, seed: number, offset = 0): { W: Float32Array; xtx: Float64Array } {
  const r = seededRandom(seed);
  const W = Float32Array.from({ length: rows * cols }, () => (r() * 2 - 1) * (r() < 0.1 ? 3 : 1) + offset);
  const X = new Float64Array(samples * cols);
  for (let s = 0; s < samples; s++) {
    let prev = 0;
    for (let k = 0; k < cols; k++) X[s * cols + k] = prev = 0.6 * prev + (r() * 2 - 1) * (1 + (k % 5 === 0 ? 2 : 0));
  }
  return { W, xtx: gramRef(X, samples, cols) };
}
