import { svd } from '../linalg/svd.js';

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
