import { matmul } from '../linalg/gemm.js';
import { svd } from '../linalg/svd.js';
import { greedyAssignment, structureCandidates } from './kronecker-structure.js';

/**
 * Nearest Kronecker sums (Van Loan & Pitsianis 1993): for W (m×n) with m = m1·m2, n = n1·n2,
 * ‖W − Σ_r A_r ⊗ B_r‖_F = ‖R(W) − Σ_r vec(A_r) vec(B_r)ᵀ‖_F, where R(W) has one row per block
 * W_ij (m2×n2, i < m1, j < n1) holding vec(W_ij); so the optimal factors for given shapes come from
 * the rank-R SVD of R(W): vec(A_r) = √σ_r u_r, vec(B_r) = √σ_r v_r. Float64 throughout.
 */
export interface KroneckerShape {
  m1: number;
  n1: number;
  m2: number;
  n2: number;
}

export interface KroneckerFactors {
  shape: KroneckerShape;
  /** R factors A_r, each m1×n1 row-major */
  A: Float64Array[];
  /** R factors B_r, each m2×n2 row-major */
  B: Float64Array[];
  /** singular values of R(W), all of them (for the error of any R) */
  sigma: Float64Array;
}

export function rearrange(W: ArrayLike<number>, s: KroneckerShape): Float64Array {
  const { m1, n1, m2, n2 } = s;
  const n = n1 * n2;
  const R = new Float64Array(m1 * n1 * m2 * n2);
  for (let i = 0; i < m1; i++) {
    for (let j = 0; j < n1; j++) {
      const row = (i * n1 + j) * m2 * n2;
      for (let k = 0; k < m2; k++) for (let l = 0; l < n2; l++) R[row + k * n2 + l] = W[(i * m2 + k) * n + j * n2 + l]!;
    }
  }
  return R;
}

export async function nearestKronecker(W: ArrayLike<number>, s: KroneckerShape, terms: number): Promise<KroneckerFactors> {
  const rows = s.m1 * s.n1;
  const cols = s.m2 * s.n2;
  const d = await svd(rearrange(W, s), rows, cols);
  const A: Float64Array[] = [];
  const B: Float64Array[] = [];
  for (let r = 0; r < Math.min(terms, d.rank); r++) {
    const root = Math.sqrt(d.S[r]!);
    A.push(Float64Array.from({ length: rows }, (_, i) => d.U[i * d.rank + r]! * root));
    B.push(Float64Array.from({ length: cols }, (_, i) => d.Vt[r * cols + i]! * root));
  }
  return { shape: s, A, B, sigma: d.S };
}

/** Σ_r A_r ⊗ B_r as a dense m×n matrix. */
export function kroneckerDense(f: KroneckerFactors): Float64Array {
  const { m1, n1, m2, n2 } = f.shape;
  const n = n1 * n2;
  const W = new Float64Array(m1 * m2 * n);
  f.A.forEach((A, r) => {
    const B = f.B[r]!;
    for (let i = 0; i < m1; i++) for (let j = 0; j < n1; j++) {
      const a = A[i * n1 + j]!;
      if (a === 0) continue;
      for (let k = 0; k < m2; k++) for (let l = 0; l < n2; l++) W[(i * m2 + k) * n + j * n2 + l] += a * B[k * n2 + l]!;
    }
  });
  return W;
}

/** Divisor pairs (a, b) of x with a·b = x, a ≤ b, for choosing factor shapes. */
export function factorPairs(x: number): [number, number][] {
  const out: [number, number][] = [];
  for (let a = 1; a * a <= x; a++) if (x % a === 0) out.push([a, x / a]);
  return out;
}

/**
 * Factor shapes near square for both dimensions: m1·m2 = m, n1·n2 = n with m1 ≈ √m, n1 ≈ √n,
 * which minimises the parameter count R·(m1n1 + m2n2) for one term.
 */
export function squarestShape(m: number, n: number): KroneckerShape {
  const [m1, m2] = factorPairs(m).at(-1)!;
  const [n1, n2] = factorPairs(n).at(-1)!;
  return { m1, n1, m2, n2 };
}

function squaredDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}

/** W[rowPerm[t], colPerm[u]] at [t, u] */
export function permute(W: ArrayLike<number>, n: number, rowPerm: Int32Array, colPerm: Int32Array): Float64Array {
  const out = new Float64Array(rowPerm.length * colPerm.length);
  rowPerm.forEach((src, t) => {
    for (let u = 0; u < colPerm.length; u++) out[t * n + u] = W[src * n + colPerm[u]!]!;
  });
  return out;
}

export interface PermutedKronecker {
  factors: KroneckerFactors;
  /** W[rowPerm[b], colPerm[c]] is what the factors approximate at [b, c] */
  rowPerm: Int32Array;
  colPerm: Int32Array;
  /** ‖W − Ŵ‖²_F with the permutations, and with none */
  error: number;
  errorWithoutPermutation: number;
}

export interface PermutationSearch {
  /** rounds of greedy row/column re-assignment */
  rounds: number;
  /** start from the structure-detection orders (kronecker-structure.ts) when they factor better */
  structure: boolean;
}

/**
 * Row and column permutations P, Q that lower ‖P W Q − Σ A⊗B‖ (TQCompressedGPT-2's idea). Start:
 * the better of no permutation and the structure-detection orders (exact on a permuted single
 * product). Then alternately re-assign W's rows (then columns) to the rows of the current Kronecker
 * approximation they match best (greedy assignment on the inner products), refit the factors, and
 * keep a step only when the error falls. Never worse than no permutation.
 */
export async function permutedKronecker(W: ArrayLike<number>, s: KroneckerShape, terms: number, search: PermutationSearch): Promise<PermutedKronecker> {
  const m = s.m1 * s.m2;
  const n = s.n1 * s.n2;
  let Wp: Float64Array = Float64Array.from(W);
  let rowPerm: Int32Array = Int32Array.from({ length: m }, (_, i) => i);
  let colPerm: Int32Array = Int32Array.from({ length: n }, (_, i) => i);
  let factors = await nearestKronecker(Wp, s, terms);
  let error = squaredDistance(Wp, kroneckerDense(factors));
  const errorWithoutPermutation = error;
  if (search.structure) {
    for (const c of await structureCandidates(Wp, s.m1, s.m2, s.n1, s.n2)) {
      const candidate = permute(W, n, c.rowPerm, c.colPerm);
      const f = await nearestKronecker(candidate, s, terms);
      const e = squaredDistance(candidate, kroneckerDense(f));
      if (e < error * (1 - 1e-9)) ({ Wp, factors, error, rowPerm, colPerm } = { Wp: candidate, factors: f, error: e, ...c });
    }
  }
  for (let round = 0; round < search.rounds; round++) {
    let improved = false;
    for (const axis of ['rows', 'cols'] as const) {
      const K = kroneckerDense(factors);
      const size = axis === 'rows' ? m : n;
      // S[source, target] = <W's source line, K's target line>
      const S = axis === 'rows' ? await matmul(Wp, K, m, n, m, { transB: true }) : await matmul(Wp, K, n, m, n, { transA: true });
      const sourceOf = greedyAssignment(S, size);
      const candidate = axis === 'rows' ? permute(Wp, n, sourceOf, Int32Array.from({ length: n }, (_, i) => i)) : permute(Wp, n, Int32Array.from({ length: m }, (_, i) => i), sourceOf);
      const f = await nearestKronecker(candidate, s, terms);
      const e = squaredDistance(candidate, kroneckerDense(f));
      if (e < error * (1 - 1e-9)) {
        Wp = candidate;
        factors = f;
        error = e;
        improved = true;
        if (axis === 'rows') rowPerm = Int32Array.from(sourceOf, (src) => rowPerm[src]!);
        else colPerm = Int32Array.from(sourceOf, (src) => colPerm[src]!);
      }
    }
    if (!improved) break;
  }
  return { factors, rowPerm, colPerm, error, errorWithoutPermutation };
}

/**
 * Multiply-adds per token of x ↦ (Σ_r A_r ⊗ B_r) x in each contraction order: A first (over n1)
 * costs R·m1·n2·(n1 + m2), B first (over n2) R·n1·m2·(n2 + m1); dense costs m·n.
 */
export function kroneckerMacs(s: KroneckerShape, terms: number): { aFirst: number; bFirst: number } {
  return { aFirst: terms * s.m1 * s.n2 * (s.n1 + s.m2), bFirst: terms * s.n1 * s.m2 * (s.n2 + s.m1) };
}

/** The cheaper contraction order (a-first on a tie: it needs no output transpose). */
export function kroneckerOrder(s: KroneckerShape): 'a-first' | 'b-first' {
  const c = kroneckerMacs(s, 1);
  return c.aFirst <= c.bFirst ? 'a-first' : 'b-first';
}

/** A Transpose of `dims` by `perm` that moves data: some two axes longer than 1 change order. */
export function movesData(dims: readonly number[], perm: readonly number[]): boolean {
  const order = perm.filter((axis) => dims[axis]! > 1);
  return order.some((axis, i) => i > 0 && axis < order[i - 1]!);
}

export function isIdentityPermutation(p: ArrayLike<number>): boolean {
  return Array.prototype.every.call(p, (x: number, i: number) => x === i);
}

/** q with q[p[i]] = i */
export function inversePermutation(p: ArrayLike<number>): number[] {
  const inv = new Array<number>(p.length);
  for (let i = 0; i < p.length; i++) inv[p[i]!] = i;
  return inv;
}
