import { describe, expect, it } from 'vitest';
import { crossEntropy, hiddenMse, klLoss } from '../../src/distill/loss.js';
import { seededRandom } from '../../src/util/random.js';
import { loadTf } from '../../src/runtime/tf.js';

const ROWS = 6;
const VOCAB = 11;

function randomLogits(seed: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: ROWS * VOCAB }, () => 4 * (r() - 0.5));
}

/** softmax(z / T) of one row, in float64 */
function softmax(z: Float32Array, row: number, T: number): Float64Array {
  const x = Array.from(z.subarray(row * VOCAB, (row + 1) * VOCAB), (v) => v / T);
  const max = Math.max(...x);
  const e = x.map((v) => Math.exp(v - max));
  const s = e.reduce((a, b) => a + b, 0);
  return Float64Array.from(e, (v) => v / s);
}

describe('distillation losses', () => {
  it('forward KL: value matches Σ p_T log(p_T/p_S), gradient w.r.t. student logits equals (p_S − p_T)/T per row', async () => {
    const { tf } = await loadTf();
    const zs = randomLogits(1);
    const zt = randomLogits(2);
    for (const T of [1, 2.5]) {
      let expected = 0;
      for (let r = 0; r < ROWS; r++) {
        const ps = softmax(zs, r, T);
        const pt = softmax(zt, r, T);
        for (let v = 0; v < VOCAB; v++) expected += pt[v]! * Math.log(pt[v]! / ps[v]!);
      }
      expected /= ROWS;
      const teacher = tf.tensor2d(zt, [ROWS, VOCAB]);
      const { value, grad: grads } = tf.valueAndGrad((s: any) => klLoss(tf, s, teacher, T, 'forward'))(tf.tensor2d(zs, [ROWS, VOCAB]));
      expect(Math.abs(value.dataSync()[0]! - expected) / expected).toBeLessThan(1e-5);
      const g = grads.dataSync();
      let worst = 0;
      for (let r = 0; r < ROWS; r++) {
        const ps = softmax(zs, r, T);
        const pt = softmax(zt, r, T);
        // the loss is a mean over rows, so each row's gradient carries 1/ROWS
        for (let v = 0; v < VOCAB; v++) worst = Math.max(worst, Math.abs(g[r * VOCAB + v]! * ROWS - (ps[v]! - pt[v]!) / T));
      }
      expect(worst).toBeLessThan(1e-6);
    }
  });

  it('reverse KL is Σ p_S log(p_S/p_T), zero when the distributions agree, and differs from forward KL', async () => {
    const { tf } = await loadTf();
    const zs = randomLogits(3);
    const zt = randomLogits(4);
    let expected = 0;
    for (let r = 0; r < ROWS; r++) {
      const ps = softmax(zs, r, 1);
      const pt = softmax(zt, r, 1);
      for (let v = 0; v < VOCAB; v++) expected += ps[v]! * Math.log(ps[v]! / pt[v]!);
    }
    expected /= ROWS;
    const s = tf.tensor2d(zs, [ROWS, VOCAB]);
    const t = tf.tensor2d(zt, [ROWS, VOCAB]);
    const reverse = klLoss(tf, s, t, 1, 'reverse').dataSync()[0]!;
    expect(Math.abs(reverse - expected) / expected).toBeLessThan(1e-5);
    expect(Math.abs(reverse - klLoss(tf, s, t, 1, 'forward').dataSync()[0]!)).toBeGreaterThan(1e-3);
    // shifting logits by a constant leaves the distribution, so the KL is 0
    expect(klLoss(tf, s, tf.add(s, 3) as any, 1, 'reverse').dataSync()[0]!).toBeLessThan(1e-6);
  });

  it('cross-entropy is the mean negative log-probability of the labels; hidden MSE the mean squared difference', async () => {
    const { tf } = await loadTf();
    const z = randomLogits(5);
    const labels = Int32Array.from({ length: ROWS }, (_, r) => (r * 7) % VOCAB);
    let expected = 0;
    for (let r = 0; r < ROWS; r++) expected -= Math.log(softmax(z, r, 1)[labels[r]!]!);
    expected /= ROWS;
    const ce = crossEntropy(tf, tf.tensor2d(z, [ROWS, VOCAB]), tf.tensor1d(labels, 'int32')).dataSync()[0]!;
    expect(Math.abs(ce - expected) / expected).toBeLessThan(1e-5);
    const a = tf.tensor([1, 2, 3, 4]);
    const b = tf.tensor([1, 0, 3, 8]);
    expect(hiddenMse(tf, a, b).dataSync()[0]).toBeCloseTo((4 + 16) / 4, 6);
  });
});
