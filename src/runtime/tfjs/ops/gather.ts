import type * as tfjs from '@tensorflow/tfjs';
import type { Tf } from '../../tf.js';
import type { SaveFunc } from '../custom-grad.js';
import { gatherHost, HostArray, mapArrays, normAxis } from '../host.js';
import type { OpImpl } from './types.js';

/**
 * Gather along `axis`. The gradient w.r.t. the gathered tensor is a scatter-add, which tfjs computes
 * with UnsortedSegmentSum, a kernel the wasm backend lacks; here it is a one-hot product instead:
 *   ∂L/∂X[p, n, q] = Σ_i [idx_i = n] · ∂L/∂Y[p, i, q]   =   onehot(idx)ᵀ · ∂L/∂Y
 */
export function gatherWithGrad(tf: Tf, x: tfjs.Tensor, idx: tfjs.Tensor, axis: number): tfjs.Tensor {
  const ax = normAxis(axis, x.rank);
  const pre = x.shape.slice(0, ax).reduce((a, b) => a * b, 1);
  const n = x.shape[ax]!;
  const post = x.shape.slice(ax + 1).reduce((a, b) => a * b, 1);
  const I = idx.size;
  const shape = x.shape;
  const f = tf.customGrad(((params: tfjs.Tensor, indices: tfjs.Tensor, save: SaveFunc) => {
    save([indices]);
    return {
      value: tf.gather(params, indices, ax),
      gradFunc: (dy: tfjs.Tensor, saved: tfjs.Tensor[]) => {
        const oneHot = tf.oneHot(tf.reshape(saved[0]!, [I]), n, 1, 0, 'float32'); // [I, n]
        const d = tf.reshape(tf.transpose(tf.reshape(dy, [pre, I, post]), [1, 0, 2]), [I, pre * post]);
        const g = tf.matMul(oneHot, d, true, false); // [n, pre·post]
        return [tf.reshape(tf.transpose(tf.reshape(g, [n, pre, post]), [1, 0, 2]), shape), tf.zerosLike(saved[0]!)];
      },
    };
  }) as unknown as Parameters<Tf['customGrad']>[0]);
  return f(x, idx);
}

export const gather: OpImpl = (a) => {
  const axis = a.int('axis', 0);
  if (a.allHost()) return gatherHost(a.host(0), a.host(1), axis);
  const tf = a.tf;
  const x = a.tensor(0);
  const ax = normAxis(axis, x.rank);
  const idxVal = a.val(1);
  let idx: tfjs.Tensor;
  if (idxVal instanceof HostArray) {
    // negative indices count from the end (ONNX); tf.gather does not take them
    const n = x.shape[ax]!;
    if (idxVal.data.some((v) => v < 0)) {
      const fixed = mapArrays([idxVal], 'int32', (v) => (v < 0 ? v + n : v));
      idx = tf.tensor(fixed.data as Int32Array, fixed.shape, 'int32');
    } else {
      idx = a.tensor(1);
    }
  } else {
    idx = idxVal.dtype === 'int32' ? idxVal : tf.cast(idxVal, 'int32');
  }
  return x.dtype === 'float32' ? gatherWithGrad(tf, x, idx, ax) : tf.gather(x, idx, ax);
};
