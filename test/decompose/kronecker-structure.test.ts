import { describe, expect, it } from 'vitest';
import { kroneckerDense, permute, permutedKronecker, type KroneckerShape } from '../../src/decompose/kronecker-math.js';
import { seededRandom } from '../../src/util/random.js';
import { kronSum, random } from './kronecker-fixtures.js';

function shuffled(n: number, seed: number): Int32Array {
  const r = seededRandom(seed);
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

const relative = (err2: number, W: ArrayLike<number>) => Math.sqrt(err2 / Array.from(W).reduce((a, w) => a + w * w, 0));

/** the factors, put back in W's own order, against W */
function reconstructionError(W: ArrayLike<number>, n: number, found: Awaited<ReturnType<typeof permutedKronecker>>): number {
  const dense = kroneckerDense(found.factors);
  const back = new Float64Array(W.length);
  found.rowPerm.forEach((src, t) => found.colPerm.forEach((col, u) => (back[src * n + col] = dense[t * n + u]!)));
  let num = 0;
  let den = 0;
  for (let i = 0; i < W.length; i++) {
    num += (W[i]! - back[i]!) ** 2;
    den += W[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

describe('permuted Kronecker structure detection', () => {
  const shapes: KroneckerShape[] = [
    { m1: 4, n1: 6, m2: 8, n2: 5 },
    { m1: 6, n1: 4, m2: 6, n2: 4 }, // equal factor sizes: A's and B's classes look alike
    { m1: 4, n1: 8, m2: 43, n2: 8 }, // stories260K's up_proj grid
  ];
  for (const s of shapes) {
    it(`recovers P (A⊗B) Q to float precision from float32 weights, ${s.m1}×${s.n1} ⊗ ${s.m2}×${s.n2}`, async () => {
      const m = s.m1 * s.m2;
      const n = s.n1 * s.n2;
      const W = Float32Array.from(permute(kronSum(s, 1, 11), n, shuffled(m, 3), shuffled(n, 4)));
      const plain = await permutedKronecker(W, s, 1, { rounds: 0, structure: false });
      const found = await permutedKronecker(W, s, 1, { rounds: 0, structure: true });
      const before = relative(found.errorWithoutPermutation, W);
      const after = relative(found.error, W);
      console.log(`${s.m1}×${s.n1}⊗${s.m2}×${s.n2}: relative error without permutation ${before.toExponential(2)}, with ${after.toExponential(2)}`);
      expect(relative(plain.error, W)).toBeGreaterThan(0.3); // the shuffle destroys the structure
      expect(after).toBeLessThanOrEqual(1e-5); // measured ~1e-8 (float32 rounding of W)
      expect(reconstructionError(W, n, found)).toBeLessThanOrEqual(1e-5);
    });
  }

  it('with noise, the error falls to the noise level and is never above the unpermuted one', async () => {
    const s = { m1: 4, n1: 6, m2: 8, n2: 5 };
    const m = 32;
    const n = 30;
    const clean = permute(kronSum(s, 1, 21), n, shuffled(m, 5), shuffled(n, 6));
    const noise = random(m * n, 99);
    const scale = 1e-2 * Math.sqrt(clean.reduce((a, w) => a + w * w, 0) / noise.reduce((a, w) => a + w * w, 0));
    const W = clean.map((w, i) => w + scale * noise[i]!);
    const found = await permutedKronecker(W, s, 1, { rounds: 3, structure: true });
    const before = relative(found.errorWithoutPermutation, W);
    const after = relative(found.error, W);
    console.log(`noisy 1 %: relative error without permutation ${before.toExponential(2)}, with ${after.toExponential(2)}`);
    expect(after).toBeLessThanOrEqual(1.5e-2); // the noise is 1e-2 of ‖W‖; measured ≈ 1e-2
    expect(before).toBeGreaterThan(0.3);
    expect(reconstructionError(W, n, found)).toBeCloseTo(after, 10);
  });

  it('on pure noise (no structure) it is never worse than no permutation', async () => {
    const s = { m1: 4, n1: 4, m2: 4, n2: 4 };
    const W = random(256, 7);
    const found = await permutedKronecker(W, s, 2, { rounds: 2, structure: true });
    expect(found.error).toBeLessThanOrEqual(found.errorWithoutPermutation);
  });
});
