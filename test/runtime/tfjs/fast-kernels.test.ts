import type * as tfjs from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { loadTf } from '../../../src/runtime/tf.js';
import { broadcastTo } from '../../../src/runtime/tfjs/custom-grad.js';
import { matMul2d } from '../../../src/runtime/tfjs/ops/linear.js';
import { narrowOutputProduct } from '../../../src/runtime/tfjs/ops/narrow-output.js';
import { batchedMatMul, smallInnerProduct } from '../../../src/runtime/tfjs/ops/small-inner.js';
import { seededRandom } from '../../../src/util/random.js';
import { allClose } from '../../helpers.js';
import { matmulRef } from '../../reference/matmul.js';

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

  it('narrowOutputProduct: P·V, Pᵀ·∂O and ∂S·K shapes (inner 40, output ≤ 16 columns) equal float64 to one rounding, for causal and dense left factors; batchedMatMul\'s gradients through it too', async () => {
    const { tf } = await loadTf();
    const r = seededRandom(11);
    const rand = (n: number) => Float32Array.from({ length: n }, () => r() - 0.5);
    const [batch, S] = [6, 40];
    /** rows of a causal softmax: zero above the diagonal, as attention's P */
    const causal = (n: number) => {
      const P = new Float32Array(n * S * S);
      for (let i = 0; i < n * S; i++) {
        const row = P.subarray(i * S, (i + 1) * S);
        for (let j = 0; j <= i % S; j++) row[j] = Math.exp(r());
        const sum = row.reduce((a, b) => a + b, 0);
        row.forEach((v, j) => (row[j] = v / sum));
      }
      return P;
    };
    const one = (got: Float32Array, want: Float64Array, what: string) => {
      const c = allClose(got, want, 2 ** -23, 1e-12); // a float64 sum rounded once to float32: within half an ulp
      expect(c.ok, `${what}: ${c.worst}`).toBe(true);
    };
    for (const N of [1, 8, 16]) {
      for (const [kind, P] of [['causal', causal(batch)], ['dense', rand(batch * S * S)]] as const) {
        const V = rand(batch * S * N);
        const p = tf.tensor(P, [2, 3, S, S]);
        const v = tf.tensor(V, [2, 3, S, N]);
        const vt = tf.tensor(Float32Array.from({ length: V.length }, (_, i) => V[Math.floor(i / (S * N)) * S * N + (i % S) * N + Math.floor((i % (S * N)) / S)]!), [2, 3, N, S]);
        const y = narrowOutputProduct(tf, p, v, false, false)!.dataSync() as Float32Array;
        const yt = narrowOutputProduct(tf, p, v, true, false)!.dataSync() as Float32Array;
        const yb = narrowOutputProduct(tf, p, vt, false, true)!.dataSync() as Float32Array;
        for (let i = 0; i < batch; i++) {
          const Pi = P.subarray(i * S * S, (i + 1) * S * S);
          const Vi = V.subarray(i * S * N, (i + 1) * S * N);
          const at = (x: Float32Array) => x.subarray(i * S * N, (i + 1) * S * N);
          one(at(y), matmulRef(Pi, Vi, S, S, N), `${kind} P·V, N ${N}, batch ${i}`);
          one(at(yt), matmulRef(Pi, Vi, S, S, N, true), `${kind} Pᵀ·∂O, N ${N}, batch ${i}`);
          one(at(yb), matmulRef(Pi, Vi, S, S, N), `${kind} ∂S·K with K stored transposed, N ${N}, batch ${i}`);
        }
        tf.dispose([p, v, vt]);
      }
    }
    // the gradient of P·V: ∂P = R·Vᵀ (inner N: the small-inner loop), ∂V = Pᵀ·R (this loop)
    const P = causal(batch);
    const V = rand(batch * S * 8);
    const R = rand(batch * S * 8);
    const [gp, gv] = tf.grads((x: tfjs.Tensor, w: tfjs.Tensor) => tf.sum(tf.mul(batchedMatMul(tf, x, w), tf.tensor(R, [2, 3, S, 8]))))([tf.tensor(P, [2, 3, S, S]), tf.tensor(V, [2, 3, S, 8])]);
    const [gpd, gvd] = [gp!.dataSync() as Float32Array, gv!.dataSync() as Float32Array];
    for (let i = 0; i < batch; i++) {
      const [Pi, Vi, Ri] = [P.subarray(i * S * S, (i + 1) * S * S), V.subarray(i * S * 8, (i + 1) * S * 8), R.subarray(i * S * 8, (i + 1) * S * 8)];
      one(gpd.subarray(i * S * S, (i + 1) * S * S), matmulRef(Ri, Vi, S, 8, S, false, true), `∂P batch ${i}`);
      one(gvd.subarray(i * S * 8, (i + 1) * S * 8), matmulRef(Pi, Ri, S, S, 8, true), `∂V batch ${i}`);
    }
    expect(narrowOutputProduct(tf, tf.zeros([2, 40, 40]), tf.zeros([2, 40, 17]), false, false)).toBeUndefined(); // 17 columns: tfjs' kernel
    expect(narrowOutputProduct(tf, tf.zeros([2, 8, 16]), tf.zeros([2, 16, 8]), false, false)).toBeUndefined(); // inner 16: small-inner's or tfjs'
    expect(narrowOutputProduct(tf, tf.zeros([2, 40, 40]), tf.zeros([2, 40, 8]), true, true)).toBeUndefined();
  });
});
