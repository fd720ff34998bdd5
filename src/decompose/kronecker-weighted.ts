import { choleskyInverse, choleskySolve, cholesky } from '../linalg/cholesky.js';
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
 * Cholesky. When the other side's factors are vectors (n2 = 1 for the A-step, n1 = 1 for the B-step:
 * the rank-like shapes m×1 ⊗ 1×n the budget mostly picks), N = G ⊗ H with G = [B_rᵀB_s] R×R, so
 * α N = t is G X H = T: X = G⁻¹ T H⁻¹, two GEMMs with H⁻¹ inverted once for all iterations instead
 * of an (R·n)² Cholesky per step; the other side then has width 1 and its R×R normal matrix is
 * Σ_k F_k H F_kᵀ (normalThroughH). Float64 throughout. Each step is an exact minimisation, so f never
 * rises; the best iterate is returned.
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

/** columns vec(F_rᵀ F_s) for all (r, s), as a (c·c) × R² matrix; F_r are rows×c: one Gram of [F_1 … F_R] */
async function crossGrams(F: Float64Array[], rows: number, c: number): Promise<Float64Array> {
  const R = F.length;
  const S = new Float64Array(rows * R * c);
  F.forEach((f, r) => {
    for (let k = 0; k < rows; k++) for (let a = 0; a < c; a++) S[k * R * c + r * c + a] = f[k * c + a]!;
  });
  const SS = await matmul(S, S, R * c, rows, R * c, { transA: true });
  const out = new Float64Array(c * c * R * R);
  for (let r = 0; r < R; r++) for (let a = 0; a < c; a++) for (let s2 = 0; s2 < R; s2++) for (let b = 0; b < c; b++) out[(a * c + b) * R * R + r * R + s2] = SS[(r * c + a) * R * c + s2 * c + b]!;
  return out;
}

/**
 * The R×R normal matrix of a side of width 1 (n1 = 1 for the A-step, n2 = 1 for the B-step), in
 * solveSide's G layout: N[r, s] = Σ_k F_r[k, :] H F_s[k, :]ᵀ over the other side's factors F (rows×n).
 * One GEMM (the crossGrams route would build an n²×R² matrix).
 */
async function normalThroughH(F: Float64Array[], rows: number, n: number, H: Float64Array): Promise<Float64Array> {
  const R = F.length;
  const Fall = new Float64Array(rows * R * n);
  F.forEach((f, r) => {
    for (let k = 0; k < rows; k++) Fall.set(f.subarray(k * n, (k + 1) * n), (k * R + r) * n);
  });
  const P = await matmul(Fall, H, rows * R, n, n);
  const N = new Float64Array(R * R);
  for (let k = 0; k < rows; k++) {
    for (let r = 0; r < R; r++) {
      for (let t = 0; t < R; t++) {
        let dot = 0;
        const pr = (k * R + r) * n;
        const ft = (k * R + t) * n;
        for (let b = 0; b < n; b++) dot += P[pr + b]! * Fall[ft + b]!;
        N[r * R + t] += dot;
      }
    }
  }
  return N;
}

/**
 * The update of one side when N = G ⊗ H (the other side's factors are vectors): per factor row i,
 * X_i = G⁻¹ T_i H⁻¹ with T_i[r, j] = T[(i·c + j)·R + r]; G is R×R, Hinv c×c. Returns R factors rows×c.
 */
async function solveSideSeparable(G: Float64Array, Hinv: Float64Array, T: Float64Array, R: number, rows: number, c: number): Promise<Float64Array[]> {
  let trace = 0;
  for (let r = 0; r < R; r++) trace += G[r * R + r]!;
  const ridged = G.slice();
  for (let r = 0; r < R; r++) ridged[r * R + r] += 1e-12 * (trace / R) + 1e-300;
  const Ginv = await choleskyInverse(await cholesky(ridged, R), R);
  // M [(i, r), j] = T_i[r, j]; Y = M H⁻¹
  const M = new Float64Array(rows * R * c);
  for (let i = 0; i < rows; i++) for (let j = 0; j < c; j++) for (let r = 0; r < R; r++) M[(i * R + r) * c + j] = T[(i * c + j) * R + r]!;
  const Y = await matmul(M, Hinv, rows * R, c, c);
  // Z [r, (i, j)] = Y_i[r, j]; X = G⁻¹ Z
  const Z = new Float64Array(R * rows * c);
  for (let i = 0; i < rows; i++) for (let r = 0; r < R; r++) for (let j = 0; j < c; j++) Z[r * rows * c + i * c + j] = Y[(i * R + r) * c + j]!;
  const X = await matmul(Ginv, Z, R, R, rows * c);
  return Array.from({ length: R }, (_, r) => X.slice(r * rows * c, (r + 1) * rows * c));
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

export interface WeightedOptions {
  /** solve N = G ⊗ H steps separably (default); false forces the full (R·n)² Cholesky, for tests */
  separable?: boolean;
}

export async function weightedKronecker(W: ArrayLike<number>, H: Float64Array, start: KroneckerFactors, iterations: number, opts: WeightedOptions = {}): Promise<WeightedFit> {
  const { m1, n1, m2, n2 } = start.shape;
  const m = m1 * m2;
  const n = n1 * n2;
  const R = start.A.length;
  const W64 = Float64Array.from(W);
  const Hr = blockRearrange(H, n1, n2);
  // rearranged W H: (m1·n1) × (m2·n2)
  const RV = rearrange(await matmul(W64, H, m, n, n), start.shape);
  const separable = opts.separable !== false && (n1 === 1 || n2 === 1);
  // H⁻¹ once for every iteration (H is the layer's dampened XᵀX: positive definite)
  const Hinv = separable ? await choleskyInverse(await cholesky(H, n), n) : undefined;
  let factors = start;
  const objectiveBefore = await weightedObjective(W64, kroneckerDense(start), H, m, n);
  let objective = objectiveBefore;
  let done = 0;
  for (let it = 0; it < iterations; it++) {
    // A-step: N from Hr·vec(B_rᵀB_s), t from R(WH)·vec(B_r)
    const TA = await matmul(RV, stackColumns(factors.B), m1 * n1, m2 * n2, R);
    const A =
      separable && n2 === 1
        ? await solveSideSeparable(await crossGrams(factors.B, m2, 1), Hinv!, TA, R, m1, n1)
        : await solveSide(separable && n1 === 1 ? await normalThroughH(factors.B, m2, n2, H) : await matmul(Hr, await crossGrams(factors.B, m2, n2), n1 * n1, n2 * n2, R * R), TA, R, m1, n1);
    // B-step: N from Hrᵀ·vec(A_rᵀA_s), t from R(WH)ᵀ·vec(A_r)
    const TB = await matmul(RV, stackColumns(A), m2 * n2, m1 * n1, R, { transA: true });
    const B =
      separable && n1 === 1
        ? await solveSideSeparable(await crossGrams(A, m1, 1), Hinv!, TB, R, m2, n2)
        : await solveSide(separable && n2 === 1 ? await normalThroughH(A, m1, n1, H) : await matmul(Hr, await crossGrams(A, m1, n1), n2 * n2, n1 * n1, R * R, { transA: true }), TB, R, m2, n2);
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
