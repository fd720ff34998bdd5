import { seededRandom } from '../util/random.js';

/**
 * Orthogonal matrices Q [n, n] (float64, row-major, QᵀQ = I) for incoherence rotations (QuaRot,
 * Ashkboos et al. 2024; QuIP#): a randomized Hadamard matrix diag(±1)·H_n/√n when n is a power of
 * two, otherwise a random orthogonal matrix (Gram–Schmidt on a seeded Gaussian matrix). Both spread
 * every weight's outliers evenly over the rotated coordinates.
 */
export function randomOrthogonal(n: number, seed: number): { Q: Float64Array; kind: 'hadamard' | 'gaussian' } {
  return (n & (n - 1)) === 0 ? { Q: randomizedHadamard(n, seed), kind: 'hadamard' } : { Q: gaussianOrthogonal(n, seed), kind: 'gaussian' };
}

/** diag(s)·H_n/√n, s_i = ±1 seeded, H_n Sylvester's Hadamard matrix (H[i, j] = (−1)^popcount(i & j)). */
export function randomizedHadamard(n: number, seed: number): Float64Array {
  const rand = seededRandom(seed);
  const Q = new Float64Array(n * n);
  const norm = 1 / Math.sqrt(n);
  for (let i = 0; i < n; i++) {
    const s = rand() < 0.5 ? -norm : norm;
    for (let j = 0; j < n; j++) Q[i * n + j] = popcount(i & j) % 2 ? -s : s;
  }
  return Q;
}

function popcount(v: number): number {
  let c = 0;
  for (; v; v &= v - 1) c++;
  return c;
}

/** Rows of a seeded Gaussian matrix orthonormalised by modified Gram–Schmidt (twice, for float64 orthogonality). */
function gaussianOrthogonal(n: number, seed: number): Float64Array {
  const rand = seededRandom(seed);
  const Q = new Float64Array(n * n);
  for (let i = 0; i < n * n; i += 2) {
    // Box–Muller
    const r = Math.sqrt(-2 * Math.log(1 - rand()));
    const t = 2 * Math.PI * rand();
    Q[i] = r * Math.cos(t);
    if (i + 1 < n * n) Q[i + 1] = r * Math.sin(t);
  }
  for (let pass = 0; pass < 2; pass++) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < i; j++) {
        let d = 0;
        for (let k = 0; k < n; k++) d += Q[i * n + k]! * Q[j * n + k]!;
        for (let k = 0; k < n; k++) Q[i * n + k] -= d * Q[j * n + k]!;
      }
      let s = 0;
      for (let k = 0; k < n; k++) s += Q[i * n + k]! ** 2;
      const inv = 1 / Math.sqrt(s);
      for (let k = 0; k < n; k++) Q[i * n + k] *= inv;
    }
  }
  return Q;
}
