import { choleskySolve, cholesky } from '../linalg/cholesky.js';
import { matmul } from '../linalg/gemm.js';
import { kroneckerDense, rearrange, type KroneckerFactors } from './kronecker-math.js';

/**
 * Output-aware Kronecker factors (TQCompressedGPT-2's iterative mode): minimise
 * f = tr((W − Ŵ) H (W − Ŵ)ᵀ), Ŵ = Σ_r A_r ⊗ B_r, H = XᵀX of the layer's calibration inputs, by
 * alternating least squares from the Van Loan–Pitsianis factors. With B fixed, f is quadratic in A
 * and separates over A's rows i: α_i N = t_i with α_i = [A_1[i,:] … A_R[i,:]],
 *   N[(r,j),(s,j')] = Σ_{l,l'} H[(j,l),(j',l')] (B_rᵀB_s)[l,l']    (the same for every i)
 *   t_i[(r,j)]      = Σ_{k,l} (W H)[(i,k),(j,l)] B_r[k,l]            (rearranged W H times vec B_r)
 * and symmetrically for B with the roles of (j, A) and (l, B) swapped. Every contraction is one GEMM
 * over a rearrangement of H or of W H; the (R·n1)² and (R·n2)² normal matrices are solved by
 * Cholesky. Float64 throughout. Each step is an exact minimisation, so f never rises; the best iterate
 * is returned.
 */

export interface WeightedFit {
  factors: KroneckerFactors;
  /** f at the start (the plain factors) and at the end */
  objectiveBefore: number;
  objective: number;
  iterations: number;
}

/** tr((W − Ŵ) H (W − Ŵ)ᵀ) */
export async function weightedObjective(W: ArrayLike<number>, approx: ArrayLike<number>, H: Float64Array, m: number, n: number): Promise<number> {
  const D = new Float64Array(m * n);
  for (let i = 0; i < D.length; i++) D[i] = W[i]! - approx[i]!;
  const DH = await matmul(D, H, m, n, n);
  let f = 0;
  for (let i = 0; i < D.length; i++) f += DH[i]! * D[i]!;
  return f;
}

/** Hr[(j,j'),(l,l')] = H[(j,l),(j',l')]: H's n1×n1 grid of n2×n2 blocks, one block per row */
function blockRearrange(H: Float64Array, n1: number, n2: number): Float64Array {
  const n = n1 * n2;
  const out = new Float64Array(n * n);
  for (let j = 0; j < n1; j++) for (let l = 0; l < n2; l++) for (let jj = 0; jj < n1; jj++) for (let ll = 0; ll < n2; ll++) out[(j * n1 + jj) * n2 * n2 + l * n2 + ll] = H[(j * n2 + l) * n + jj * n2 + ll]!;
  return out;
}

/** columns vec(F_rᵀ F_s) for all (r, s), as a (c·c) × R² matrix; F_r are rows×c */
function crossGrams(F: Float64Array[], rows: number, c: number): Float64Array {
  const R = F.length;
  const out = new Float64Array(c * c * R * R);
  for (let r = 0; r < R; r++) for (let s = 0; s < R; s++) {
    const col = r * R + s;
    for (let a = 0; a < c; a++) for (let b = 0; b < c; b++) {
      let dot = 0;
      for (let k = 0; k < rows; k++) dot += F[r]![k * c + a]! * F[s]![k * c + b]!;
      out[(a * c + b) * R * R + col] = dot;
    }
  }
  return out;
}

/**
 * One least-squares update of one side: G (side size c², R² columns of contracted H) gives the
 * normal matrix N[(r,j),(s,j')] = G[(j,j'), (r,s)]; T (rows·c × R) gives the right-hand sides.
 * Returns the new factors, each `rows`×c.
 */
async function solveSide(G: Float64Array, T: Float64Array, R: number, rows: number, c: number): Promise<Float64Array[]> {
  const size = R * c;
  const N = new Float64Array(size * size);
  for (let r = 0; r < R; r++) for (let s = 0; s < R; s++) for (let j = 0; j < c; j++) for (let jj = 0; jj < c; jj++) N[(r * c + j) * size + s * c + jj] = G[(j * c + jj) * R * R + r * R + s]!;
  // a tiny ridge keeps N positive definite when some term has vanished
  let trace = 0;
  for (let i = 0; i < size; i++) trace += N[i * size + i]!;
  const ridge = 1e-12 * (trace / size) + 1e-300;
  for (let i = 0; i < size; i++) N[i * size + i] += ridge;
  // right-hand sides, one column per row i of the factor
  const rhs = new Float64Array(size * rows);
  for (let i = 0; i < rows; i++) for (let r = 0; r < R; r++) for (let j = 0; j < c; j++) rhs[(r * c + j) * rows + i] = T[(i * c + j) * R + r]!;
  const X = await choleskySolve(await cholesky(N, size), size, rhs, rows);
  return Array.from({ length: R }, (_, r) => Float64Array.from({ length: rows * c }, (_, idx) => X[(r * c + (idx % c)) * rows + Math.floor(idx / c)]!));
}

/** Columns vec(F_r), as an (rows·c) × R matrix. */
function stackColumns(F: Float64Array[]): Float64Array {
  const R = F.length;
  const len = F[0]!.length;
  const out = new Float64Array(len * R);
  F.forEach((f, r) => f.forEach((v, i) => (out[i * R + r] = v)));
  return out;
}

export async function weightedKronecker(W: ArrayLike<number>, H: Float64Array, start: KroneckerFactors, iterations: number): Promise<WeightedFit> {
  const { m1, n1, m2, n2 } = start.shape;
  const m = m1 * m2;
  const n = n1 * n2;
  const R = start.A.length;
  const W64 = Float64Array.from(W);
  const Hr = blockRearrange(H, n1, n2);
  // rearranged W H: (m1·n1) × (m2·n2)
  const RV = rearrange(await matmul(W64, H, m, n, n), start.shape);
  let factors = start;
  const objectiveBefore = await weightedObjective(W64, kroneckerDense(start), H, m, n);
  let objective = objectiveBefore;
  let done = 0;
  for (let it = 0; it < iterations; it++) {
    // A-step: N from Hr·vec(B_rᵀB_s), t from R(WH)·vec(B_r)
    const GA = await matmul(Hr, crossGrams(factors.B, m2, n2), n1 * n1, n2 * n2, R * R);
    const TA = await matmul(RV, stackColumns(factors.B), m1 * n1, m2 * n2, R);
    const A = await solveSide(GA, TA, R, m1, n1);
    // B-step: N from Hrᵀ·vec(A_rᵀA_s), t from R(WH)ᵀ·vec(A_r)
    const GB = await matmul(Hr, crossGrams(A, m1, n1), n2 * n2, n1 * n1, R * R, { transA: true });
    const TB = await matmul(RV, stackColumns(A), m2 * n2, m1 * n1, R, { transA: true });
    const B = await solveSide(GB, TB, R, m2, n2);
    const next = { ...factors, A, B };
    const f = await weightedObjective(W64, kroneckerDense(next), H, m, n);
    done = it + 1;
    if (!(f < objective)) break;
    const converged = objective - f <= 1e-9 * objective;
    factors = next;
    objective = f;
    if (converged) break;
  }
  return { factors, objectiveBefore, objective, iterations: done };
}
