import { EigenvalueDecomposition, Matrix, SingularValueDecomposition } from 'ml-matrix';
import type { FloatArray } from './backend.js';
import { symmetrize, toFloat64, transpose } from './blocks.js';
import { NotPositiveDefiniteError, cholesky } from './cholesky.js';
import { matmul } from './gemm.js';
import { invertLower } from './triangular.js';

/**
 * Singular value decomposition A = U·diag(S)·Vᵀ of a row-major m×n matrix, working precision float64
 * (float32 input is widened once). Notation: r = min(m, n); U m×r, S r (descending), Vt r×n.
 *
 * svd(): small problems (r ≤ GK_MAX_RANK) run ml-matrix's Golub–Kahan SVD (backward stable). Larger ones
 * take the eigendecomposition of the smaller Gram matrix G = AᵀA (tall case; AAᵀ for wide), formed by
 * MLAS DGEMM and diagonalised by ml-matrix's symmetric QL (tred2/tql2), then σᵢ = ‖A·vᵢ‖ and
 * uᵢ = A·vᵢ/σᵢ (roles swapped for wide A). Accuracy of that path: the eigenvector side (V for tall A,
 * U for wide) is orthonormal to ~1e-14 and U·diag(S) = A·V holds to ~1e-15 relative, so U·S·Vᵀ
 * reconstructs A to ~1e-14 relative Frobenius error whatever the spectrum; a singular value has
 * absolute error ≈ ε·σ₁²/σᵢ (relative ≈ ε·(σ₁/σᵢ)², so ≤ 1e-8 for σᵢ ≥ 1e-4·σ₁), and the normalised
 * side loses orthogonality at the same rate ε·(σ₁/σᵢ)² (columns with σᵢ ≤ r·ε·σ₁ are replaced by an
 * orthonormal completion). Fine for compression, which keeps the large σᵢ; not a substitute for LAPACK's gesdd on
 * ill-conditioned problems.
 *
 * truncatedSvd(): randomized range finder (Halko, Martinsson & Tropp 2011) with power iterations; each
 * product is a DGEMM and each orthonormalization is CholeskyQR2 (eigen fallback when the block is
 * numerically rank deficient), then the small exact SVD above on B = Qᵀ·A.
 */

export interface Svd {
  /** m×r row-major, orthonormal columns */
  U: Float64Array;
  /** r singular values, descending */
  S: Float64Array;
  /** r×n row-major, orthonormal rows */
  Vt: Float64Array;
  rank: number;
}

/** ml-matrix's Golub–Kahan SVD handles these; past it the Gram path is much faster */
const GK_MAX_RANK = 32;

export async function svd(A: FloatArray, m: number, n: number): Promise<Svd> {
  if (A.length !== m * n) throw new Error(`svd: A has ${A.length} elements, expected m·n = ${m}·${n}`);
  const A64 = toFloat64(A);
  if (m >= n) return svdTall(A64, m, n);
  // A = (Aᵀ)ᵀ = (U'·S·V'ᵀ)ᵀ = V'·S·U'ᵀ
  const t = await svdTall(transpose(A64, m, n), n, m);
  return { U: transpose(t.Vt, t.rank, m), S: t.S, Vt: transpose(t.U, n, t.rank), rank: t.rank };
}

async function svdTall(A: Float64Array, m: number, n: number): Promise<Svd> {
  if (n <= GK_MAX_RANK) {
    const d = new SingularValueDecomposition(Matrix.from1DArray(m, n, A), { autoTranspose: false });
    const V = Float64Array.from(d.rightSingularVectors.to1DArray());
    return { U: Float64Array.from(d.leftSingularVectors.to1DArray()), S: Float64Array.from(d.diagonal), Vt: transpose(V, n, n), rank: n };
  }
  // G = AᵀA = V·Λ·Vᵀ
  const G = symmetrize(await matmul(A, A, n, m, n, { transA: true }), n);
  const { vectors: V } = symmetricEigen(G, n);
  // A·V = U·diag(σ): σᵢ is the column norm, uᵢ the normalised column
  const AV = await matmul(A, V, m, n, n);
  const S = new Float64Array(n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) S[j] += AV[i * n + j]! ** 2;
  for (let j = 0; j < n; j++) S[j] = Math.sqrt(S[j]!);
  const order = [...S.keys()].sort((a, b) => S[b]! - S[a]!);
  const U = new Float64Array(m * n);
  const Vt = new Float64Array(n * n);
  const Ss = new Float64Array(n);
  order.forEach((src, j) => {
    const s = S[src]!;
    Ss[j] = s;
    const inv = s > 0 ? 1 / s : 0;
    for (let i = 0; i < m; i++) U[i * n + j] = AV[i * n + src]! * inv;
    for (let i = 0; i < n; i++) Vt[j * n + i] = V[i * n + src]!;
  });
  completeColumns(U, m, n, Ss, n * Number.EPSILON * (Ss[0] ?? 0));
  return { U, S: Ss, Vt, rank: n };
}

/** Eigenpairs of a symmetric n×n matrix: values descending, vectors n×n row-major with eigenvector i in column i. */
export function symmetricEigen(G: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const e = new EigenvalueDecomposition(Matrix.from1DArray(n, n, G), { assumeSymmetric: true });
  const lambda = e.realEigenvalues;
  const W = e.eigenvectorMatrix;
  const order = [...lambda.keys()].sort((a, b) => lambda[b]! - lambda[a]!);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, j) => {
    values[j] = lambda[src]!;
    for (let i = 0; i < n; i++) vectors[i * n + j] = W.get(i, src);
  });
  return { values, vectors };
}

/** Replaces the columns j of Q (m×k) whose weight S[j] ≤ tol by unit vectors orthogonal to all other columns. */
function completeColumns(Q: Float64Array, m: number, k: number, S: Float64Array, tol: number): void {
  const bad = [...S.keys()].filter((j) => !(S[j]! > tol));
  if (bad.length === 0) return;
  const isBad = new Set(bad);
  const good = [...S.keys()].filter((j) => !isBad.has(j));
  const v = new Float64Array(m);
  let cand = 0;
  for (const j of bad) {
    while (cand < m) {
      v.fill(0);
      v[cand++] = 1;
      // orthogonalize twice against every accepted column
      for (let pass = 0; pass < 2; pass++) {
        for (const g of good) {
          let dot = 0;
          for (let i = 0; i < m; i++) dot += Q[i * k + g]! * v[i]!;
          for (let i = 0; i < m; i++) v[i] -= dot * Q[i * k + g]!;
        }
      }
      let norm = 0;
      for (let i = 0; i < m; i++) norm += v[i]! ** 2;
      norm = Math.sqrt(norm);
      if (norm > 0.5) {
        for (let i = 0; i < m; i++) Q[i * k + j] = v[i]! / norm;
        good.push(j);
        break;
      }
    }
  }
}

export interface TruncatedSvdOptions {
  /** extra random directions beyond rank (default 10) */
  oversample?: number;
  /** power iterations (default 2; raise for slowly decaying spectra) */
  powerIterations?: number;
  /** seed of the Gaussian test matrix (default 0) */
  seed?: number;
}

export interface TruncatedSvd {
  /** U·diag(S), m×rank row-major */
  US: Float64Array;
  /** Vᵀ, rank×n row-major, orthonormal rows */
  Vt: Float64Array;
  /** the rank leading singular values, descending */
  S: Float64Array;
  rank: number;
}

/** Rank-k approximation A ≈ US·Vt (Eckart–Young optimum up to the randomized method's error). */
export async function truncatedSvd(A: FloatArray, m: number, n: number, rank: number, opts: TruncatedSvdOptions = {}): Promise<TruncatedSvd> {
  if (A.length !== m * n) throw new Error(`truncatedSvd: A has ${A.length} elements, expected m·n = ${m}·${n}`);
  const r = Math.min(m, n);
  if (!Number.isInteger(rank) || rank < 1 || rank > r) throw new Error(`truncatedSvd: rank must be an integer in [1, ${r}], got ${rank}`);
  const A64 = toFloat64(A);
  const l0 = rank + (opts.oversample ?? 10);
  // the range finder saves nothing when the sketch is most of the matrix
  if (2 * l0 >= r) return truncate(await svd(A64, m, n), m, n, rank);
  // Y = A·Ω, then (A·Aᵀ)^q·Y with re-orthonormalization after every product
  let { Q: Qm, cols: l } = await orthonormalize(await matmul(A64, gaussian(n * l0, opts.seed ?? 0), m, n, l0), m, l0);
  for (let q = 0; q < (opts.powerIterations ?? 2); q++) {
    const Z = await orthonormalize(await matmul(A64, Qm, n, m, l, { transA: true }), n, l);
    ({ Q: Qm, cols: l } = await orthonormalize(await matmul(A64, Z.Q, m, n, Z.cols), m, Z.cols));
  }
  // B = Qᵀ·A (l×n) = Ub·S·Vt, so A ≈ (Q·Ub)·S·Vt
  const B = await matmul(Qm, A64, l, m, n, { transA: true });
  const b = await svd(B, l, n);
  const k = Math.min(rank, b.rank);
  const UbS = new Float64Array(l * rank);
  for (let i = 0; i < l; i++) for (let j = 0; j < k; j++) UbS[i * rank + j] = b.U[i * b.rank + j]! * b.S[j]!;
  const S = new Float64Array(rank);
  S.set(b.S.subarray(0, k));
  const Vt = new Float64Array(rank * n);
  Vt.set(b.Vt.subarray(0, k * n));
  return { US: await matmul(Qm, UbS, m, l, rank), Vt, S, rank };
}

function truncate(s: Svd, m: number, n: number, rank: number): TruncatedSvd {
  const US = new Float64Array(m * rank);
  for (let i = 0; i < m; i++) for (let j = 0; j < rank; j++) US[i * rank + j] = s.U[i * s.rank + j]! * s.S[j]!;
  return { US, Vt: s.Vt.slice(0, rank * n), S: s.S.slice(0, rank), rank };
}

/**
 * Orthonormal basis of the columns of Y (m×l): CholeskyQR2, Q = Y·R⁻¹ with RᵀR = YᵀY, twice. When YᵀY
 * is numerically singular the pass uses its eigendecomposition and drops directions with
 * λ ≤ 1e-13·λ_max, so `cols` may come back below l.
 */
async function orthonormalize(Y: Float64Array, m: number, l: number): Promise<{ Q: Float64Array; cols: number }> {
  let Q = Y;
  let cols = l;
  for (let pass = 0; pass < 2; pass++) {
    const G = symmetrize(await matmul(Q, Q, cols, m, cols, { transA: true }), cols);
    try {
      const Rinv = await invertLower(await cholesky(G, cols), cols);
      Q = await matmul(Q, Rinv, m, cols, cols, { transB: true });
    } catch (e) {
      if (!(e instanceof NotPositiveDefiniteError)) throw e;
      const { values, vectors } = symmetricEigen(G, cols);
      const keep = [...values.keys()].filter((i) => values[i]! > 1e-13 * values[0]!);
      const T = new Float64Array(cols * keep.length);
      for (let i = 0; i < cols; i++) keep.forEach((src, j) => (T[i * keep.length + j] = vectors[i * cols + src]! / Math.sqrt(values[src]!)));
      Q = await matmul(Q, T, m, cols, keep.length);
      cols = keep.length;
    }
  }
  return { Q, cols };
}

/** n standard normal samples (mulberry32 + Box–Muller), reproducible for a seed */
function gaussian(count: number, seed: number): Float64Array {
  let s = seed >>> 0 || 0x9e3779b9;
  const uniform = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const out = new Float64Array(count);
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const th = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(th);
    if (i + 1 < count) out[i + 1] = r * Math.sin(th);
  }
  return out;
}
