import type * as tfjs from '@tensorflow/tfjs';
import type { Tf } from '../runtime/tf.js';

/** tf.customGrad with plain tensor inputs (tfjs types the inputs as tensors or a save function). */
export function customGrad<T extends tfjs.Tensor>(
  tf: Tf,
  f: (...inputs: tfjs.Tensor[]) => { value: T; gradFunc: (dy: T) => tfjs.Tensor | tfjs.Tensor[] },
): (...inputs: tfjs.Tensor[]) => T {
  return tf.customGrad(f as unknown as Parameters<Tf['customGrad']>[0]) as unknown as (...inputs: tfjs.Tensor[]) => T;
}

/** x ↦ f(x) forward, identity backward: the straight-through estimator. */
export function straightThrough(tf: Tf, x: tfjs.Tensor, f: (x: tfjs.Tensor) => tfjs.Tensor): tfjs.Tensor {
  return customGrad(tf, (v) => ({ value: f(v), gradFunc: (dy) => dy }))(x);
}
