import { truncatedSvd } from '../linalg/svd.js';
import { factorPairs, kroneckerMacs, rearrange, type KroneckerShape } from './kronecker-math.js';

/**
 * Factor shapes and term count from a parameter budget: among all m1 | m, n1 | n and R with
 * R·(m1·n1 + m2·n2) ≤ ratio·m·n, the one whose Van Loan–Pitsianis fit has the lowest error.
 * For one shape more terms never hurt, and ‖W − Σ_{r≤R} A_r⊗B_r‖² = ‖W‖² − Σ_{r≤R} σ_r² (σ the
 * singular values of the rearranged W), so each shape costs one rank-R SVD at its largest
 * affordable R. Shapes with a scalar factor (A or B 1×1) are dense and left out; the shape
 * m×1 ⊗ 1×n is rank-R SVD and competes like any other. With maxCompute, a shape's terms are
 * also capped so that running it costs at most that fraction of the dense layer's multiply-adds.
 */

export interface ShapeConstraints {
  m1?: number;
  n1?: number;
  terms?: number;
  /** at most this fraction of the dense layer's multiply-adds per token (kroneckerMacs, the cheaper order) */
  maxCompute?: number;
}

export interface ShapeChoice {
  shape: KroneckerShape;
  terms: number;
  /** ‖W − Ŵ‖²_F of the choice (randomized SVD: an upper estimate on large layers) */
  error: number;
  params: number;
}

const divisors = (x: number): number[] => [...new Set(factorPairs(x).flat())].sort((a, b) => a - b);

/** every shape allowed by the constraints, with its largest affordable term count */
export function budgetCandidates(m: number, n: number, ratio: number, fixed: ShapeConstraints = {}): { shape: KroneckerShape; terms: number }[] {
  const budget = ratio * m * n;
  const out: { shape: KroneckerShape; terms: number }[] = [];
  for (const m1 of fixed.m1 !== undefined ? [fixed.m1] : divisors(m)) {
    for (const n1 of fixed.n1 !== undefined ? [fixed.n1] : divisors(n)) {
      const shape = { m1, n1, m2: m / m1, n2: n / n1 };
      const a = m1 * n1;
      const b = shape.m2 * shape.n2;
      if (a === 1 || b === 1) continue;
      const most = Math.min(Math.floor(budget / (a + b)), a, b);
      let terms = fixed.terms ?? most;
      if (fixed.maxCompute !== undefined && fixed.terms === undefined) {
        // MACs grow linearly in R: the most terms within the compute cap too
        const perTerm = kroneckerMacs(shape, 1);
        terms = Math.min(terms, Math.floor((fixed.maxCompute * m * n) / Math.min(perTerm.aFirst, perTerm.bFirst)));
      }
      const macs = kroneckerMacs(shape, terms);
      if (fixed.maxCompute !== undefined && Math.min(macs.aFirst, macs.bFirst) > fixed.maxCompute * m * n) continue;
      if (terms >= 1 && terms <= most) out.push({ shape, terms });
    }
  }
  return out;
}

/** the lowest-error candidate, or undefined when no shape meets the budget */
export async function chooseShape(W: ArrayLike<number>, m: number, n: number, ratio: number, fixed: ShapeConstraints = {}): Promise<ShapeChoice | undefined> {
  let total = 0;
  for (let i = 0; i < W.length; i++) total += W[i]! ** 2;
  let best: ShapeChoice | undefined;
  for (const { shape, terms } of budgetCandidates(m, n, ratio, fixed)) {
    const d = await truncatedSvd(rearrange(W, shape), shape.m1 * shape.n1, shape.m2 * shape.n2, terms);
    const error = Math.max(0, total - d.S.reduce((acc, s) => acc + s * s, 0));
    const params = terms * (shape.m1 * shape.n1 + shape.m2 * shape.n2);
    // errors within rounding of each other are a tie, won by fewer params
    const tie = 1e-12 * total;
    if (!best || error < best.error - tie || (error <= best.error + tie && params < best.params)) best = { shape, terms, error, params };
  }
  return best;
}
