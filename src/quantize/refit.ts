import { groupCount, type QuantizedMatrix } from './grid.js';

/**
 * Scale refit once the integer codes are fixed (least squares on the group scales). Notation: w a
 * row of the ORIGINAL weight [cols], q its codes, z_g and s_g the zero point and scale of group g,
 * a_k = q_k − z_g(k), H = XᵀX [cols, cols] (identity when absent: plain weight error). The row's
 * dequantized weight ŵ = A·s is linear in its G scales (A[k, g(k)] = a_k), so the output error
 * (w − ŵ)ᵀ H (w − ŵ) is minimised by the G×G normal equations (AᵀHA)·s = AᵀH·w. Zero points stay
 * integer. Working precision float64; the scales are stored float32 (or through `round`, e.g. to
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
const RIDGE = 1e-9;

export function refitScales(W: Float32Array, m: QuantizedMatrix, H?: Float64Array, round: (s: number) => number = Math.fround): RefitResult {
  const { rows, cols, groupSize: g } = m;
  const G = groupCount(cols, g);
  const scales = m.scales.slice();
  const a = new Float64Array(cols);
  const d = new Float64Array(cols);
  const Hw = new Float64Array(cols);
  const U = new Float64Array(cols * G);
  const M = new Float64Array(G * G);
  const b = new Float64Array(G);
  const s = new Float64Array(G);
  const groupOf = Int32Array.from({ length: cols }, (_, k) => Math.floor(k / g));
  let before = 0;
  let after = 0;
  let refitted = 0;
  // (w − ŵ)ᵀ H (w − ŵ) of the row with scales `sc`, ŵ in float32 as stored
  const rowError = (r: number, sc: ArrayLike<number>, o: number): number => {
    for (let k = 0; k < cols; k++) d[k] = W[r * cols + k]! - Math.fround(a[k]! * sc[o + groupOf[k]!]!);
    return quadratic(d, H, cols);
  };
  for (let r = 0; r < rows; r++) {
    const o = r * G;
    for (let k = 0; k < cols; k++) a[k] = m.q[r * cols + k]! - m.zeros[o + groupOf[k]!]!;
    // normal equations: M = AᵀHA, b = AᵀHw
    M.fill(0);
    b.fill(0);
    if (H) {
      U.fill(0);
      for (let k = 0; k < cols; k++) {
        let hw = 0;
        const hk = k * cols;
        for (let l = 0; l < cols; l++) {
          const h = H[hk + l]!;
          hw += h * W[r * cols + l]!;
          U[k * G + groupOf[l]!] += h * a[l]!;
        }
        Hw[k] = hw;
      }
      for (let k = 0; k < cols; k++) {
        const gk = groupOf[k]!;
        b[gk] += a[k]! * Hw[k]!;
        for (let h = 0; h < G; h++) M[gk * G + h] += a[k]! * U[k * G + h]!;
      }
    } else {
      for (let k = 0; k < cols; k++) {
        const gk = groupOf[k]!;
        M[gk * G + gk] += a[k]! * a[k]!;
        b[gk] += a[k]! * W[r * cols + k]!;
      }
    }
    let trace = 0;
    for (let h = 0; h < G; h++) trace += M[h * G + h]!;
    const ridge = RIDGE * Math.max(trace / G, Number.MIN_VALUE);
    for (let h = 0; h < G; h++) {
      M[h * G + h] += ridge;
      b[h] += ridge * scales[o + h]!;
    }
    const old = rowError(r, scales, o);
    before += old;
    if (!solveSpd(M, b, G, s)) {
      after += old;
      continue;
    }
    const fresh = Float32Array.from(s, round);
    const err = rowError(r, fresh, 0);
    if (err < old) {
      scales.set(fresh, o);
      after += err;
      refitted++;
    } else after += old;
  }
  return { scales, before, after, refitted };
}

/** dᵀ H d (H symmetric), dᵀd without H. */
function quadratic(d: Float64Array, H: Float64Array | undefined, n: number): number {
  let e = 0;
  for (let k = 0; k < n; k++) {
    if (!H) {
      e += d[k]! * d[k]!;
      continue;
    }
    let hd = 0;
    for (let l = 0; l < n; l++) hd += H[k * n + l]! * d[l]!;
    e += d[k]! * hd;
  }
  return e;
}

/** x with M·x = b for a small symmetric positive-definite M (Cholesky, float64); false when a pivot is not positive. M and b are overwritten. */
function solveSpd(M: Float64Array, b: Float64Array, n: number, x: Float64Array): boolean {
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
