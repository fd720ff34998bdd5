import type { KroneckerShape } from '../../src/decompose/kronecker-math.js';
import { seededRandom } from '../../src/util/random.js';

/** Uniform values in [−0.5, 0.5), seeded. */
export function random(n: number, seed: number): Float64Array {
  const r = seededRandom(seed);
  return Float64Array.from({ length: n }, () => r() - 0.5);
}

/** Σ_r A_r ⊗ B_r of random factors by the definition, (A⊗B)[i·m2 + k, j·n2 + l] = A[i, j]·B[k, l], float64. */
export function kronSum(s: KroneckerShape, terms: number, seed: number): Float64Array {
  const { m1, n1, m2, n2 } = s;
  const W = new Float64Array(m1 * m2 * n1 * n2);
  for (let r = 0; r < terms; r++) {
    const A = random(m1 * n1, seed + 2 * r);
    const B = random(m2 * n2, seed + 2 * r + 1);
    for (let i = 0; i < m1; i++) for (let j = 0; j < n1; j++) for (let k = 0; k < m2; k++) for (let l = 0; l < n2; l++) W[(i * m2 + k) * n1 * n2 + j * n2 + l] += A[i * n1 + j]! * B[k * n2 + l]!;
  }
  return W;
}
