import type * as tfjs from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { loadTf } from '../../../src/runtime/tf.js';
import { broadcastTo } from '../../../src/runtime/tfjs/custom-grad.js';
import { matMul2d } from '../../../src/runtime/tfjs/ops/linear.js';
import { batchedMatMul, smallInnerProduct } from '../../../src/runtime/tfjs/ops/small-inner.js';
import { seededRandom } from '../../../src/util/random.js';
import { allClose } from '../../helpers.js';

/** float64 C = A·B for row-major A [m, k], B [k, n] */
function matmul64(A: Float32Array, B: Float32Array, m: number, k: number, n: number): Float64Array {
  const C = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) C[i * n + j]! += A[i * k + p]! * B[p * n + j]!;
  return C;
}

function transpose(X: Float32Array, rows: number, cols: number): Float32Array {
  return Float32Array.from({ length: X.length }, (_, i) => X[(i % rows) * cols + Math.floor(i / rows)]!);
}

describe('kernels the executor routes around slow wasm paths', () => {
  it('matMul2d: value A·B, gradients R·Bᵀ and Aᵀ·R for L = ⟨R, A·B⟩ (float64 reference)', async () => {
    const { tf } = await loadTf();
    const r = seededRandom(5);
    const [m, k, n] = [37, 19, 23];
    const A = Float32Array.from({ length: m * k }, () => r() - 0.5);
    const B = Float32Array.from({ length: k * n }, () => r() - 0.5);
    const R = Float32Array.from({ length: m * n }, () => r() - 0.5);
    const a = tf.tensor2d(A, [m, k]);
    const b = tf.tensor2d(B, [k, n]);
    const rt = tf.tensor2d(R, [m, n]);
    const y = matMul2d(tf, a, b);
    const [ga, gb] = tf.grads((x: tfjs.Tensor, w: tfjs.Tensor) => tf.sum(tf.mul(matMul2d(tf, x, w), rt)))([a, b]);
    const checks = [
      [y, matmul64(A, B, m, k, n)],
      [ga!, matmul64(R, transpose(B, k, n), m, n, k)],
      [gb!, matmul64(transpose(A, m, k), R, k, m, n)],
    ] as const;
    for (const [got, want] of checks) {
      const c = allClose(got.dataSync(), want, 1e-5, 1e-6); // float32 sums of ≤ 37 terms; measured worst ≈ 1e-7
      expect(c.ok, c.worst).toBe(true);
    }
  });

  it('broadcastTo along one size-1 axis copies the input and sums the gradient back over that axis', async () => {
    const { tf } = await loadTf();
    const X = Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => i - 7.5);
    const x = tf.tensor(X, [2, 1, 3, 4]);
    const y = broadcastTo(tf, x, [2, 3, 3, 4]);
    const yd = y.dataSync();
    for (let b = 0; b < 2; b++) for (let c = 0; c < 3; c++) for (let j = 0; j < 12; j++) expect(yd[(b * 3 + c) * 12 + j]).toBe(X[b * 12 + j]);
    const R = Float32Array.from({ length: 2 * 3 * 3 * 4 }, (_, i) => (i % 5) - 2);
    const [g] = tf.grads((v: tfjs.Tensor) => tf.sum(tf.mul(broadcastTo(tf, v, [2, 3, 3, 4]), tf.tensor(R, [2, 3, 3, 4]))))([x]);
    const gd = g!.dataSync();
    for (let b = 0; b < 2; b++) for (let j = 0; j < 12; j++) expect(gd[b * 12 + j]).toBe(R[(b * 3 + 0) * 12 + j]! + R[(b * 3 + 1) * 12 + j]! + R[(b * 3 + 2) * 12 + j]!);
  });

  it('batchedMatMul: attention-shaped products and their gradients equal float64 per batch, whether the inner dimension takes the JavaScript loop or not', async () => {
    const { tf } = await loadTf();
    const r = seededRandom(9);
    const rand = (n: number) => Float32Array.from({ length: n }, () => r() - 0.5);
    // [2,3] batch of [m,k]·[k,n]: k = 8 (Q·Kᵀ: the loop forward and for ∂A = R·Bᵀ when n = 8), k = 20 (tfjs)
    for (const [m, k, n] of [[17, 8, 13], [11, 13, 8], [9, 20, 7]] as const) {
      const batch = 6;
      const A = rand(batch * m * k);
      const B = rand(batch * k * n);
      const R = rand(batch * m * n);
      const a = tf.tensor(A, [2, 3, m, k]);
      const b = tf.tensor(B, [2, 3, k, n]);
      const y = batchedMatMul(tf, a, b).dataSync();
      const [ga, gb] = tf.grads((x: tfjs.Tensor, w: tfjs.Tensor) => tf.sum(tf.mul(batchedMatMul(tf, x, w), tf.tensor(R, [2, 3, m, n]))))([a, b]);
      const [gad, gbd] = [ga!.dataSync(), gb!.dataSync()];
      for (let i = 0; i < batch; i++) {
        const Ai = A.subarray(i * m * k, (i + 1) * m * k);
        const Bi = B.subarray(i * k * n, (i + 1) * k * n);
        const Ri = R.subarray(i * m * n, (i + 1) * m * n);
        const checks = [
          [y.subarray(i * m * n, (i + 1) * m * n), matmul64(Ai, Bi, m, k, n)],
          [gad.subarray(i * m * k, (i + 1) * m * k), matmul64(Ri, transpose(Bi, k, n), m, n, k)],
          [gbd.subarray(i * k * n, (i + 1) * k * n), matmul64(transpose(Ai, m, k), Ri, k, m, n)],
        ] as const;
        for (const [got, want] of checks) {
          const c = allClose(got, want, 1e-5, 1e-6); // float32 results of ≤ 20-term sums
          expect(c.ok, `[${m},${k},${n}] batch ${i}: ${c.worst}`).toBe(true);
        }
      }
      tf.dispose([a, b, ga!, gb!]);
    }
    const x = tf.zeros([2, 4, 20]);
    expect(smallInnerProduct(tf, x, tf.zeros([2, 20, 4]), false)).toBeUndefined(); // inner 20 > 16: tfjs' kernel
    expect(smallInnerProduct(tf, tf.zeros([2, 4, 8]), tf.zeros([1, 8, 4]), false)).toBeUndefined(); // batch dims differ
  });
});
