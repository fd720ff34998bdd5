import { matmul } from '../linalg/index.js';
import { groupCount, type QuantizedMatrix } from './grid.js';

/**
 * Scale refit once the integer codes are fixed (least squares on the group scales). Notation: w a
 * row of the ORIGINAL weight [cols], q its codes, z_g and s_g the zero point and scale of group g,
 * a_k = q_k − z_g(k), H = XᵀX [cols, cols] (identity when absent: plain weight error). The row's
 * dequantized weight ŵ = A·s is linear in its G scales (A[k, g(k)] = a_k), so the output error
 * (w − ŵ)ᵀ H (w − ŵ) is minimised by the G×G normal equations (AᵀHA)·s = AᵀH·w. Zero points stay
 * integer. Working precision float64, the rows · cols² products as GEMMs on ONNX Runtime; the scales are stored float32 (or through `round`, e.g. to
 * float16), and a row keeps its old scales unless the rounded new ones lower its error, so the
 * refit never raises it.
 */

export interface RefitResult {
  scales: Float32Array;
  /** Σ over rows of (w − ŵ)ᵀ H (w − ŵ) before and after */
  before: number;
  after: number;
  /** rows whose scales changed */
  refitted: number;
}

/** Relative ridge pulling each scale toward its old value, so a group whose codes are all at the zero point (or whose inputs never fire) keeps it. */
export const RIDGE = 1e-9;

export async function refitScales(W: Float32Array, m: QuantizedMatrix, H?: Float64Array, round: (s: number) => number = Math.fround): Promise<RefitResult> {
  const { rows, cols, groupSize: g } = m;
  const G = groupCount(cols, g);
  const groupOf = Int32Array.from({ length: cols }, (_, k) => Math.floor(k / g));
  // A[r, k] = a_k of row r: ŵ_r = A_r·s_r
  const A = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) A[r * cols + k] = m.q[r * cols + k]! - m.zeros[r * G + groupOf[k]!]!;
  const { M, b } = await normalEquations(W, A, rows, cols, G, groupOf, g, H);
  const fresh = m.scales.slice();
  const s = new Float64Array(G);
  for (let r = 0; r < rows; r++) {
    const Mr = M.subarray(r * G * G, (r + 1) * G * G);
    const br = b.subarray(r * G, (r + 1) * G);
    let trace = 0;
    for (let h = 0; h < G; h++) trace += Mr[h * G + h]!;
    const ridge = RIDGE * Math.max(trace / G, Number.MIN_VALUE);
    for (let h = 0; h < G; h++) {
      Mr[h * G + h] += ridge;
      br[h] += ridge * m.scales[r * G + h]!;
    }
    if (solveSpd(Mr, br, G, s)) for (let h = 0; h < G; h++) fresh[r * G + h] = round(s[h]!);
  }
  const old = await rowErrors(W, A, m.scales, rows, cols, G, groupOf, H);
  const err = await rowErrors(W, A, fresh, rows, cols, G, groupOf, H);
  const scales = m.scales.slice();
  let [before, after, refitted] = [0, 0, 0];
  for (let r = 0; r < rows; r++) {
    before += old[r]!;
    if (err[r]! < old[r]!) {
      scales.set(fresh.subarray(r * G, (r + 1) * G), r * G);
      after += err[r]!;
      refitted++;
    } else after += old[r]!;
  }
  return { scales, before, after, refitted };
}

/**
 * Every row's normal equations, M_r = A_rᵀ H A_r [G, G] and b_r = A_rᵀ H w_r [G], where A_r holds
 * row r's a_k in column g(k). With Y_g = A[:, g] · H[g, :] (one GEMM per group, rows · cols² in all,
 * on ONNX Runtime): M_r[g, h] = Σ_{l ∈ h} Y_g[r, l] · a_rl, and b_r[g] = Σ_{k ∈ g} a_rk (W H)[r, k].
 */
export async function normalEquations(W: Float32Array, A: Float64Array, rows: number, cols: number, G: number, groupOf: Int32Array, g: number, H?: Float64Array): Promise<{ M: Float64Array; b: Float64Array }> {
  const M = new Float64Array(rows * G * G);
  const b = new Float64Array(rows * G);
  if (!H) {
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < cols; k++) {
        const gk = groupOf[k]!;
        const a = A[r * cols + k]!;
        M[r * G * G + gk * G + gk] += a * a;
        b[r * G + gk] += a * W[r * cols + k]!;
      }
    }
    return { M, b };
  }
  const WH = await matmul(Float64Array.from(W), H, rows, cols, cols);
  for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) b[r * G + groupOf[k]!] += A[r * cols + k]! * WH[r * cols + k]!;
  for (let gi = 0; gi < G; gi++) {
    const [k0, k1] = [gi * g, Math.min(cols, (gi + 1) * g)];
    const w = k1 - k0;
    const Ag = new Float64Array(rows * w);
    for (let r = 0; r < rows; r++) Ag.set(A.subarray(r * cols + k0, r * cols + k1), r * w);
    const Y = await matmul(Ag, H.slice(k0 * cols, k1 * cols), rows, w, cols);
    for (let r = 0; r < rows; r++) {
      const o = r * G * G + gi * G;
      for (let l = 0; l < cols; l++) M[o + groupOf[l]!] += Y[r * cols + l]! * A[r * cols + l]!;
    }
  }
  return { M, b };
}

/** Each row's (w − ŵ)ᵀ H (w − ŵ) (the plain squared error without H), ŵ in float32 as stored; one GEMM. */
async function rowErrors(W: Float32Array, A: Float64Array, scales: Float32Array, rows: number, cols: number, G: number, groupOf: Int32Array, H?: Float64Array): Promise<Float64Array> {
  const D = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) D[r * cols + k] = W[r * cols + k]! - Math.fround(A[r * cols + k]! * scales[r * G + groupOf[k]!]!);
  const DH = H ? await matmul(D, H, rows, cols, cols) : D;
  const e = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let v = 0;
    for (let k = 0; k < cols; k++) v += D[r * cols + k]! * DH[r * cols + k]!;
    e[r] = v;
  }
  return e;
}

/** x with M·x = b for a small symmetric positive-definite M (Cholesky, float64); false when a pivot is not positive. M and b are overwritten. */
export function solveSpd(M: Float64Array, b: Float64Array, n: number, x: Float64Array): boolean {
  for (let j = 0; j < n; j++) {
    let p = M[j * n + j]!;
    for (let k = 0; k < j; k++) p -= M[j * n + k]! ** 2;
    if (!(p > 0)) return false;
    const ljj = Math.sqrt(p);
    M[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let v = M[i * n + j]!;
      for (let k = 0; k < j; k++) v -= M[i * n + k]! * M[j * n + k]!;
      M[i * n + j] = v / ljj;
    }
  }
  // L·y = b, then Lᵀ·x = y
  for (let i = 0; i < n; i++) {
    let v = b[i]!;
    for (let k = 0; k < i; k++) v -= M[i * n + k]! * x[k]!;
    x[i] = v / M[i * n + i]!;
  }
  for (let i = n - 1; i >= 0; i--) {
    let v = x[i]!;
    for (let k = i + 1; k < n; k++) v -= M[k * n + i]! * x[k]!;
    x[i] = v / M[i * n + i]!;
  }
  return true;
}
