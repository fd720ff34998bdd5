import { afterAll, describe, expect, it } from 'vitest';
import { releaseKernels } from '../../src/linalg/backend.js';
import { transpose } from '../../src/linalg/blocks.js';
import {
  NotPositiveDefiniteError,
  cholesky,
  choleskyInverse,
  choleskySolve,
  dampen,
  fixDeadColumns,
  hessianInverseUpperCholesky,
  zeroColumns,
} from '../../src/linalg/cholesky.js';
import { invertLower, solveLower, solveUpper } from '../../src/linalg/triangular.js';
import { allClose } from '../helpers.js';
import { matmulRef } from '../reference/matmul.js';
import { gaussianMatrix, identityResidual, spdMatrix } from '../reference/random.js';

afterAll(releaseKernels);

// 50 runs the JS base case only; 300 and 450 recurse (base ≤ 192) through DGEMM and the blocked solves
const SIZES = [50, 300, 450];

function upperZero(T: Float64Array, n: number, lower: boolean): boolean {
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if ((lower ? j > i : j < i) && T[i * n + j] !== 0) return false;
  return true;
}

describe('cholesky', () => {
  for (const n of SIZES) {
    const A = spdMatrix(n, n);

    it(`L·Lᵀ reconstructs A, L lower with positive diagonal (n=${n})`, async () => {
      const L = await cholesky(A, n);
      expect(upperZero(L, n, true)).toBe(true);
      for (let i = 0; i < n; i++) expect(L[i * n + i]).toBeGreaterThan(0);
      const c = allClose(matmulRef(L, L, n, n, n, false, true), A, 1e-12, 1e-12); // measured relFro ≤ 3.7e-16
      expect(c.ok, c.worst).toBe(true);
      expect(c.relFro).toBeLessThan(1e-14);
    });

    it(`choleskyInverse gives A·A⁻¹ = I (n=${n})`, async () => {
      const Ainv = await choleskyInverse(await cholesky(A, n), n);
      // cond(A) ≈ 60 for these matrices; residual ≈ cond·ε
      expect(identityResidual(matmulRef(A, Ainv, n, n, n), n)).toBeLessThan(1e-12); // measured 4.2e-15
    });

    it(`triangular solves and inverse satisfy their equations (n=${n})`, async () => {
      const L = await cholesky(A, n);
      const nrhs = 7;
      const B = gaussianMatrix(n * nrhs, 3);
      const U = transpose(L, n, n);
      const cases: [string, Float64Array, Float64Array][] = [
        ['L·X = B', await solveLower(L, n, B, nrhs), L],
        ['Lᵀ·X = B', await solveLower(L, n, B, nrhs, { transpose: true }), U],
        ['U·X = B', await solveUpper(U, n, B, nrhs), U],
        ['Uᵀ·X = B', await solveUpper(U, n, B, nrhs, { transpose: true }), L],
        ['A·X = B', await choleskySolve(L, n, B, nrhs), A],
      ];
      for (const [name, X, T] of cases) {
        const c = allClose(matmulRef(T, X, n, n, nrhs), B, 1e-10, 1e-10); // measured worst 3.9e-15 (A·X = B)
        expect(c.ok, `${name}: ${c.worst}`).toBe(true);
      }
      const Linv = await invertLower(L, n);
      expect(upperZero(Linv, n, true)).toBe(true);
      expect(identityResidual(matmulRef(L, Linv, n, n, n), n)).toBeLessThan(1e-12); // measured 2.2e-16
    });
  }

  it('throws NotPositiveDefiniteError naming the failing pivot', async () => {
    for (const [n, bad] of [[60, 17], [400, 0], [400, 311]] as const) {
      // SPD except that row/column `bad` makes the leading (bad+1)-minor indefinite
      const A = spdMatrix(n, 5);
      A[bad * n + bad] = -1;
      const err = await cholesky(A, n).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NotPositiveDefiniteError);
      expect((err as NotPositiveDefiniteError).pivot).toBe(bad);
      expect((err as NotPositiveDefiniteError).message).toMatch(new RegExp(`pivot ${bad} of ${n}`));
    }
  });
});

describe('hessianInverseUpperCholesky', () => {
  for (const n of [40, 320]) {
    it(`equals cholesky(cholesky_inverse(cholesky(H)), upper) as in the SparseGPT/GPTQ reference (n=${n})`, async () => {
      const H = spdMatrix(n, 100 + n);
      const U = await hessianInverseUpperCholesky(H, n);
      expect(upperZero(U, n, false)).toBe(true);
      // reference route: upper factor of Hinv is the transpose of its lower factor
      const Hinv = await choleskyInverse(await cholesky(H, n), n);
      const Uref = transpose(await cholesky(Hinv, n), n, n);
      const c = allClose(U, Uref, 1e-10, 1e-12); // measured relFro 8.1e-16, worst relative 1.5e-14
      expect(c.ok, c.worst).toBe(true);
      // Uᵀ·U·H = I
      const UtU = matmulRef(U, U, n, n, n, true, false);
      expect(identityResidual(matmulRef(UtU, H, n, n, n), n)).toBeLessThan(1e-11); // measured 3.9e-15
    });
  }

  it('reports a non-PD Hessian in H indexing (the trailing block that fails)', async () => {
    const n = 10;
    const H = new Float64Array(n * n);
    for (let i = 0; i < n; i++) H[i * n + i] = 1;
    H[7 * n + 7] = 0; // H[7:, 7:] is singular; the reversed factorization meets it at its pivot 2
    const err = await hessianInverseUpperCholesky(H, n).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotPositiveDefiniteError);
    expect((err as NotPositiveDefiniteError).pivot).toBe(7);
  });
});

describe('Hessian preparation', () => {
  it('fixDeadColumns sets dead diagonals to 1, dampen adds fraction·mean(diag) after it', () => {
    const n = 4;
    const H = Float64Array.from([2, 0, 1, 0, 0, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0]);
    const dead = fixDeadColumns(H, n);
    expect(dead).toEqual([1, 3]);
    expect([H[5], H[15]]).toEqual([1, 1]);
    const damp = dampen(H, n, 0.01);
    expect(damp).toBeCloseTo((0.01 * (2 + 1 + 6 + 1)) / 4, 15);
    expect([H[0], H[5], H[10], H[15]]).toEqual([2 + damp, 1 + damp, 6 + damp, 1 + damp]);
    expect(H[2]).toBe(1); // off-diagonal untouched
    const W = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    zeroColumns(W, 2, 4, dead);
    expect(Array.from(W)).toEqual([1, 0, 3, 0, 5, 0, 7, 0]);
  });
});
