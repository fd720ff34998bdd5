import { matmul } from '../linalg/index.js';
import { groupCount, type QuantizedMatrix } from './grid.js';
import { normalEquations, RIDGE, solveSpd } from './refit.js';

/**
 * Joint scale and offset refit once the integer codes are fixed (least squares, float zero points).
 * Notation as in refit.ts: w a row of the ORIGINAL weight [cols], q its codes, H = XᵀX (identity
 * when absent). With a free offset t_g per group the row's dequantized weight is ŵ_k = q_k·s_g + t_g,
 * linear in θ = [s; t] (2G unknowns): B[k, g(k)] = q_k, B[k, G + g(k)] = 1, and (w − Bθ)ᵀ H (w − Bθ)
 * is minimised by (BᵀHB)·θ = BᵀH·w. The stored form is MatMulNBits' float zero point z_g = −t_g / s_g
 * (ŵ = (q − z)·s); both are rounded as stored (`round`: float32, or float16), and a row keeps its
 * old scales and zero points unless the rounded new ones lower its error. Working precision float64.
 */

export interface OffsetRefitResult {
  scales: Float32Array;
  /** rows × groups float zero points in code space */
  floatZeros: Float32Array;
  /** Σ over rows of (w − ŵ)ᵀ H (w − ŵ) before and after */
  before: number;
  after: number;
  refitted: number;
}

export async function refitScalesOffsets(W: Float32Array, m: QuantizedMatrix, H?: Float64Array, round: (s: number) => number = Math.fround): Promise<OffsetRefitResult> {
  const { rows, cols, groupSize: g } = m;
  const G = groupCount(cols, g);
  const groupOf = Int32Array.from({ length: cols }, (_, k) => Math.floor(k / g));
  const Hf = H ?? identity(cols);
  const Q = Float64Array.from(m.q);
  const oldZeros = m.floatZeros ?? Float32Array.from(m.zeros);
  // scale block M_ss and b_s: refit.ts's normal equations with a_k = q_k
  const { M: Mss, b: bs } = await normalEquations(W, Q, rows, cols, G, groupOf, g, Hf);
  // HG[k, h] = Σ_{l ∈ h} H[k, l]: shared by the scale–offset and offset–offset blocks
  const HG = new Float64Array(cols * G);
  for (let k = 0; k < cols; k++) for (let l = 0; l < cols; l++) HG[k * G + groupOf[l]!] += Hf[k * cols + l]!;
  const Mtt = new Float64Array(G * G);
  for (let k = 0; k < cols; k++) for (let h = 0; h < G; h++) Mtt[groupOf[k]! * G + h] += HG[k * G + h]!;
  const WH = await matmul(Float64Array.from(W), Hf, rows, cols, cols);
  const n = 2 * G;
  const M = new Float64Array(n * n);
  const b = new Float64Array(n);
  const theta = new Float64Array(n);
  const scales = new Float32Array(m.scales.length);
  const zeros = new Float32Array(m.scales.length);
  for (let r = 0; r < rows; r++) {
    M.fill(0);
    b.fill(0);
    for (let gi = 0; gi < G; gi++) {
      for (let h = 0; h < G; h++) {
        M[gi * n + h] = Mss[r * G * G + gi * G + h]!;
        M[(G + gi) * n + G + h] = Mtt[gi * G + h]!;
      }
      b[gi] = bs[r * G + gi]!;
    }
    for (let k = 0; k < cols; k++) {
      const gk = groupOf[k]!;
      const q = Q[r * cols + k]!;
      for (let h = 0; h < G; h++) M[gk * n + G + h] += q * HG[k * G + h]!;
      b[G + gk] += WH[r * cols + k]!;
    }
    for (let i = 0; i < G; i++) for (let j = 0; j < G; j++) M[(G + j) * n + i] = M[i * n + G + j]!;
    // a tiny ridge toward the old grid keeps a group whose codes are constant (or inputs dead) solvable
    let trace = 0;
    for (let i = 0; i < n; i++) trace += M[i * n + i]!;
    const ridge = RIDGE * Math.max(trace / n, Number.MIN_VALUE);
    for (let gi = 0; gi < G; gi++) {
      const s0 = m.scales[r * G + gi]!;
      M[gi * n + gi] += ridge;
      b[gi] += ridge * s0;
      M[(G + gi) * n + G + gi] += ridge;
      b[G + gi] += ridge * -oldZeros[r * G + gi]! * s0;
    }
    const solved = solveSpd(M, b, n, theta);
    for (let gi = 0; gi < G; gi++) {
      const s = solved ? round(theta[gi]!) : 0;
      const z = s !== 0 ? round(-theta[G + gi]! / s) : NaN;
      const ok = Number.isFinite(s) && Number.isFinite(z) && s !== 0;
      scales[r * G + gi] = ok ? s : m.scales[r * G + gi]!;
      zeros[r * G + gi] = ok ? z : oldZeros[r * G + gi]!;
    }
  }
  const old = await rowErrors(W, m, m.scales, oldZeros, Hf);
  const err = await rowErrors(W, m, scales, zeros, Hf);
  const out = { scales: m.scales.slice(), floatZeros: oldZeros.slice(), before: 0, after: 0, refitted: 0 };
  for (let r = 0; r < rows; r++) {
    out.before += old[r]!;
    if (err[r]! < old[r]!) {
      out.scales.set(scales.subarray(r * G, (r + 1) * G), r * G);
      out.floatZeros.set(zeros.subarray(r * G, (r + 1) * G), r * G);
      out.after += err[r]!;
      out.refitted++;
    } else out.after += old[r]!;
  }
  return out;
}

function identity(n: number): Float64Array {
  const I = new Float64Array(n * n);
  for (let i = 0; i < n; i++) I[i * n + i] = 1;
  return I;
}

/** Each row's (w − ŵ)ᵀ H (w − ŵ), ŵ = (q − z)·s in float32 as MatMulNBits computes it; one GEMM. */
async function rowErrors(W: Float32Array, m: QuantizedMatrix, scales: Float32Array, zeros: Float32Array, H: Float64Array): Promise<Float64Array> {
  const { rows, cols, groupSize: g } = m;
  const G = groupCount(cols, g);
  const D = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < cols; k++) {
      const i = r * G + Math.floor(k / g);
      D[r * cols + k] = W[r * cols + k]! - Math.fround(Math.fround(m.q[r * cols + k]! - zeros[i]!) * scales[i]!);
    }
  }
  const DH = await matmul(D, H, rows, cols, cols);
  const e = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let v = 0;
    for (let k = 0; k < cols; k++) v += D[r * cols + k]! * DH[r * cols + k]!;
    e[r] = v;
  }
  return e;
}
