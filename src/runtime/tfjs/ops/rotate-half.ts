import type * as tfjs from '@tensorflow/tfjs';
import type { Tf } from '../../tf.js';
import { customGrad } from '../custom-grad.js';
import { FUSED_DOMAIN } from '../fusions.js';
import type { OpEntry, OpImpl } from './types.js';

/**
 * rotate_half(x) = concat(−x₂, x₁) over the halves of the last axis (d), computed as x·R with the
 * signed permutation R = [[0, I], [−I, 0]] (d × d): one 2-D product that the wasm backend runs on
 * XNNPACK, instead of a strided Split, a Neg and a Concat. Each output is one ±x term plus zero
 * products, so the values are exactly those of the three ops (up to the sign of a zero; a non-finite
 * entry turns its whole row NaN, where the three ops would move it). Backward: ∂x = ∂y·Rᵀ, exact
 * in the same way.
 */
export function rotateHalf(tf: Tf, x: tfjs.Tensor, r: tfjs.Tensor2D): tfjs.Tensor {
  const d = x.shape[x.rank - 1]!;
  return customGrad(tf, (v) => ({
    value: tf.reshape(tf.matMul(tf.reshape(v!, [-1, d]) as tfjs.Tensor2D, r), v!.shape),
    gradFunc: (dy) => tf.reshape(tf.matMul(tf.reshape(dy, [-1, d]) as tfjs.Tensor2D, tf.transpose(r)), dy.shape),
  }))(x);
}

/** R for rotate-half over a last axis of size d (even). */
export function rotateHalfMatrix(tf: Tf, d: number): tfjs.Tensor2D {
  if (d % 2 !== 0) throw new Error(`RotateHalf: last axis ${d} is odd`);
  const h = d / 2;
  const m = new Float32Array(d * d);
  for (let j = 0; j < h; j++) {
    m[(j + h) * d + j] = -1; // out[j] = −x[j + h]
    m[j * d + j + h] = 1; // out[j + h] = x[j]
  }
  return tf.tensor2d(m, [d, d]);
}

const rotateHalfOp: OpImpl = (a) => {
  const x = a.tensor(0);
  const r = a.memo(() => rotateHalfMatrix(a.tf, x.shape[x.rank - 1]!)) as tfjs.Tensor2D;
  return rotateHalf(a.tf, x, r);
};

export const FUSED_OPS: readonly OpEntry[] = [['RotateHalf', rotateHalfOp, FUSED_DOMAIN]];
