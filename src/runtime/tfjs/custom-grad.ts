import type * as tfjs from '@tensorflow/tfjs';
import type { Tf } from '../tf.js';

/** tf.customGrad with plain tensor inputs (tfjs types the inputs as tensors or a save function). */
export function customGrad<T extends tfjs.Tensor>(
  tf: Tf,
  f: (...inputs: tfjs.Tensor[]) => { value: T; gradFunc: (dy: T, saved: tfjs.Tensor[]) => tfjs.Tensor | tfjs.Tensor[] },
): (...inputs: tfjs.Tensor[]) => T {
  return tf.customGrad(f as unknown as Parameters<Tf['customGrad']>[0]) as unknown as (...inputs: tfjs.Tensor[]) => T;
}

/** Custom-gradient functions get their inputs back through tfjs' save list: closures may see disposed tensors. */
export type SaveFunc = (tensors: tfjs.Tensor[]) => void;

/**
 * broadcastTo whose gradient sums over the broadcast axes. tfjs differentiates broadcastTo through
 * Tile, whose gradient stops at rank 4 (grouped-query attention expands rank-5 key/value heads).
 */
export function broadcastTo(tf: Tf, x: tfjs.Tensor, shape: number[]): tfjs.Tensor {
  if (x.rank === shape.length && x.shape.every((d, i) => d === shape[i])) return x;
  const inShape = x.shape;
  return customGrad(tf, (v) => ({
    value: repeatOneAxis(tf, v, shape) ?? tf.broadcastTo(v, shape),
    gradFunc: (dy) => {
      const lead = shape.length - inShape.length;
      const axes = shape.map((d, i) => i).filter((i) => i < lead || (inShape[i - lead] === 1 && shape[i] !== 1));
      return tf.reshape(axes.length ? tf.sum(dy, axes) : dy, inShape);
    },
  }))(x);
}

/** x ↦ f(x) forward, identity backward: the straight-through estimator. */
export function straightThrough(tf: Tf, x: tfjs.Tensor, f: (x: tfjs.Tensor) => tfjs.Tensor): tfjs.Tensor {
  return customGrad(tf, (v) => ({ value: f(v), gradFunc: (dy) => dy }))(x);
}

/**
 * broadcastTo along a single axis of size 1 (grouped-query attention's repeated key/value heads) as
 * a concatenation of copies: the wasm backend's Tile took 2.5 ms of CPU for stories260K's
 * [4,4,1,128,8] → [4,4,2,128,8], Concat 0.13 ms. Undefined for any other broadcast.
 */
function repeatOneAxis(tf: Tf, x: tfjs.Tensor, shape: number[]): tfjs.Tensor | undefined {
  if (x.rank !== shape.length) return undefined;
  const axes = shape.map((d, i) => i).filter((i) => x.shape[i] !== shape[i]);
  if (axes.length !== 1 || x.shape[axes[0]!] !== 1) return undefined;
  return tf.concat(new Array<tfjs.Tensor>(shape[axes[0]!]!).fill(x), axes[0]);
}
