import { afterAll, describe, expect, it } from 'vitest';
import { releaseKernels } from '../../src/linalg/backend.js';
import { svd, truncatedSvd } from '../../src/linalg/svd.js';
import { allClose } from '../helpers.js';
import { matmulRef } from '../reference/matmul.js';
import { identityResidual, withSingularValues } from '../reference/random.js';

afterAll(releaseKernels);

function frob2(A: ArrayLike<number>, B?: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < A.length; i++) s += (A[i]! - (B ? B[i]! : 0)) ** 2;
  return s;
}

/** U·diag(S)·Vt */
function reconstruct(U: Float64Array, S: Float64Array, Vt: Float64Array, m: number, r: number, n: number): Float64Array {
  const US = U.slice();
  for (let i = 0; i < m; i++) for (let j = 0; j < r; j++) US[i * r + j] *= S[j]!;
  return matmulRef(US, Vt, m, r, n);
}

// 40×20 runs Golub–Kahan (r ≤ 32); 120×80 and 80×120 the Gram-eigen path (tall and wide)
const SHAPES: [number, number][] = [[40, 20], [120, 80], [80, 120]];

describe('svd', () => {
  for (const [m, n] of SHAPES) {
    const r = Math.min(m, n);
    // known spectrum spanning 1e-3..10: σᵢ = 10·0.9^i (σ_min/σ₁ = 2.3e-4 at r = 80)
    const sigma = Array.from({ length: r }, (_, i) => 10 * 0.9 ** i);
    const A = withSingularValues(m, n, sigma, m * 7 + n);

    it(`recovers known singular values and reconstructs A (${m}×${n})`, async () => {
      const s = await svd(A, m, n);
      expect(s.rank).toBe(r);
      // σ error ≈ ε·σ₁²/σᵢ on the Gram path: ≤ 1e-11 absolute here
      const c = allClose(s.S, Float64Array.from(sigma), 1e-9, 1e-11); // measured worst 5.9e-14
      expect(c.ok, c.worst).toBe(true);
      const R = reconstruct(s.U, s.S, s.Vt, m, r, n);
      expect(Math.sqrt(frob2(R, A) / frob2(A))).toBeLessThan(1e-13); // measured 1.1e-14
      // the eigenvector side (V when tall, U when wide) is orthonormal to ε (measured 1.3e-14); the
      // normalised side to ε·(σ₁/σᵢ)² ≈ 4e-9 (measured 2.9e-10)
      const [uTol, vTol] = m >= n ? [1e-8, 1e-12] : [1e-12, 1e-8];
      expect(identityResidual(matmulRef(s.U, s.U, r, m, r, true, false), r)).toBeLessThan(uTol); // UᵀU = I
      expect(identityResidual(matmulRef(s.Vt, s.Vt, r, n, r, false, true), r)).toBeLessThan(vTol); // VᵀV = I
    });

    it(`rank-k truncation error² equals the sum of the discarded σᵢ² (Eckart–Young, ${m}×${n})`, async () => {
      const s = await svd(A, m, n);
      const k = 7;
      const R = reconstruct(s.U.filter((_, i) => i % r < k), s.S.subarray(0, k), s.Vt.subarray(0, k * n), m, k, n);
      const discarded = sigma.slice(k).reduce((a, x) => a + x * x, 0);
      expect(Math.abs(frob2(R, A) - discarded) / discarded).toBeLessThan(1e-10); // measured 1.4e-15
    });
  }

  it('completes U with orthonormal columns when A is rank deficient', async () => {
    const [m, n] = [90, 60];
    const A = withSingularValues(m, n, [5, 4, 3, 2, 1], 3);
    const s = await svd(A, m, n);
    expect(s.S[4]).toBeCloseTo(1, 12);
    expect(s.S[5]!).toBeLessThan(1e-7); // bound sqrt(ε)·σ₁ for a zero direction on the Gram path; measured 2.1e-15
    expect(identityResidual(matmulRef(s.U, s.U, n, m, n, true, false), n)).toBeLessThan(1e-6); // measured 8.9e-16
    const R = reconstruct(s.U, s.S, s.Vt, m, n, n);
    expect(Math.sqrt(frob2(R, A) / frob2(A))).toBeLessThan(1e-13);
  });
});

describe('truncatedSvd', () => {
  it('matches the exact leading singular values on a decaying spectrum and meets Eckart–Young', async () => {
    const [m, n, k] = [400, 250, 12];
    const sigma = Array.from({ length: n }, (_, i) => 0.8 ** i);
    const A = Float32Array.from(withSingularValues(m, n, sigma, 42));
    const t = await truncatedSvd(A, m, n, k);
    expect(t.rank).toBe(k);
    // A is rounded to float32 (relative 6e-8), so compare σ with atol 1e-6
    const c = allClose(t.S, Float64Array.from(sigma.slice(0, k)), 1e-6, 1e-6); // measured worst 6.9e-10
    expect(c.ok, c.worst).toBe(true);
    const R = matmulRef(t.US, t.Vt, m, k, n);
    const discarded = sigma.slice(k).reduce((a, x) => a + x * x, 0);
    expect(Math.abs(frob2(R, A) - discarded) / discarded).toBeLessThan(1e-6); // measured 2.1e-9
    expect(identityResidual(matmulRef(t.Vt, t.Vt, k, n, k, false, true), k)).toBeLessThan(1e-12);
  });

  it('handles a requested rank above the numerical rank', async () => {
    const [m, n] = [300, 200];
    const A = withSingularValues(m, n, [3, 2, 1], 9);
    const t = await truncatedSvd(A, m, n, 8);
    expect(Array.from(t.S.subarray(0, 3)).map((x) => +x.toFixed(10))).toEqual([3, 2, 1]);
    const R = matmulRef(t.US, t.Vt, m, 8, n);
    expect(Math.sqrt(frob2(R, A) / frob2(A))).toBeLessThan(1e-10); // measured 8.1e-16
  });

  it('falls back to the exact SVD when the sketch would cover most of the matrix', async () => {
    const [m, n, k] = [60, 50, 20];
    const sigma = Array.from({ length: n }, (_, i) => 2 / (1 + i));
    const A = withSingularValues(m, n, sigma, 8);
    const t = await truncatedSvd(A, m, n, k);
    const c = allClose(t.S, Float64Array.from(sigma.slice(0, k)), 1e-10, 1e-12);
    expect(c.ok, c.worst).toBe(true);
  });
});
