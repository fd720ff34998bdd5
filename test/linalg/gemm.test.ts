import { afterAll, describe, expect, it } from 'vitest';
import { releaseKernels } from '../../src/linalg/backend.js';
import { gemmAccumulate, matmul } from '../../src/linalg/gemm.js';
import { allClose } from '../helpers.js';
import { matmulRef } from '../reference/matmul.js';
import { gaussianMatrix } from '../reference/random.js';

afterAll(releaseKernels);

const SHAPES: [number, number, number][] = [
  [67, 131, 45], // ORT path
  [5, 7, 3], // JS path (m·k·n < 32³)
  [1, 300, 200], // a row vector through ORT
];

describe('matmul', () => {
  for (const [m, k, n] of SHAPES) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const tag = `${m}×${k}×${n} transA=${transA} transB=${transB}`;
        const A = gaussianMatrix(m * k, m + k);
        const B = gaussianMatrix(k * n, k + n);
        const ref = matmulRef(A, B, m, k, n, transA, transB);

        it(`float64 equals the float64 loop reference (${tag})`, async () => {
          const C = await matmul(A, B, m, k, n, { transA, transB });
          expect(C).toBeInstanceOf(Float64Array);
          // entries are sums of k Gaussian products, |r| ~ sqrt(k); DGEMM differs by summation order only
          const c = allClose(C, ref, 1e-12, 1e-12); // measured relFro ≤ 6.9e-16 over all shapes
          expect(c.ok, c.worst).toBe(true);
          expect(c.relFro).toBeLessThan(1e-14);
        });

        it(`float32 matches the reference within float32 rounding (${tag})`, async () => {
          const A32 = Float32Array.from(A);
          const B32 = Float32Array.from(B);
          const ref32 = matmulRef(A32, B32, m, k, n, transA, transB);
          const C = await matmul(A32, B32, m, k, n, { transA, transB });
          expect(C).toBeInstanceOf(Float32Array);
          // |error| ≲ k·2⁻²⁴·Σ|a||b| ~ 1e-5 for k = 300 unit Gaussians
          const c = allClose(C, ref32, 1e-4, 1e-4); // measured relFro ≤ 2.1e-7, worst |error| 2.1e-5
          expect(c.ok, c.worst).toBe(true);
          expect(c.relFro).toBeLessThan(1e-5);
        });
      }
    }
  }

  it('gemmAccumulate adds alpha·A·B into C in place', async () => {
    const [m, k, n] = [40, 50, 60];
    const A = gaussianMatrix(m * k, 1);
    const B = gaussianMatrix(k * n, 2);
    const C = gaussianMatrix(m * n, 3);
    const ref = matmulRef(A, B, m, k, n);
    for (let i = 0; i < ref.length; i++) ref[i] = C[i]! - 0.5 * ref[i]!;
    const out = await gemmAccumulate(C, A, B, m, k, n, { alpha: -0.5 });
    expect(out).toBe(C);
    const c = allClose(C, ref, 1e-12, 1e-12);
    expect(c.ok, c.worst).toBe(true);
  });

  it('empty dimensions give zeros, mismatched shapes throw', async () => {
    expect(await matmul(new Float64Array(0), new Float64Array(0), 3, 0, 2)).toEqual(new Float64Array(6));
    await expect(matmul(new Float64Array(6), new Float64Array(6), 2, 3, 3)).rejects.toThrow(/B has 6 elements/);
    await expect(matmul(new Float64Array(4), new Float32Array(4) as never, 2, 2, 2)).rejects.toThrow(/float64 but B is float32/);
  });
});
