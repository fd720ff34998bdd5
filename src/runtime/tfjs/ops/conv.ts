import type * as tfjs from '@tensorflow/tfjs';
import { UserError } from '../../../errors.js';
import type { Tf } from '../../tf.js';
import type { SaveFunc } from '../custom-grad.js';
import type { OpArgs, OpImpl, OpEntry } from './types.js';

/**
 * 2-D convolution and pooling. ONNX is NCHW, tfjs kernels are NHWC: transpose at the op's edges.
 * Padding is applied explicitly (tf.pad) so the kernels run 'valid'.
 */

/** [top, left, bottom, right] pads from `pads` or `auto_pad`. */
function spatialPads(a: OpArgs, inH: number, inW: number, k: number[], s: number[]): number[] {
  const auto = a.str('auto_pad', 'NOTSET');
  if (auto === 'VALID') return [0, 0, 0, 0];
  if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') {
    const pads = [0, 0, 0, 0];
    [inH, inW].forEach((n, d) => {
      const out = Math.ceil(n / s[d]!);
      const total = Math.max((out - 1) * s[d]! + k[d]! - n, 0);
      const small = Math.floor(total / 2);
      pads[d] = auto === 'SAME_UPPER' ? small : total - small;
      pads[d + 2] = total - pads[d]!;
    });
    return pads;
  }
  return a.intList('pads') ?? [0, 0, 0, 0];
}

function padNhwc(tf: Tf, x: tfjs.Tensor, p: number[], value = 0): tfjs.Tensor {
  if (p.every((v) => v === 0)) return x;
  return tf.pad(x, [[0, 0], [p[0]!, p[2]!], [p[1]!, p[3]!], [0, 0]], value);
}

/**
 * Valid convolution with an explicit filter gradient: tfjs computes it with Conv2DBackpropFilter,
 * which the wasm backend lacks. As a correlation of x with ∂L/∂y over the batch:
 *   ∂L/∂W[i, j, c, o] = Σ_{b,h,w} x[b, h·s + i, w·s + j, c] · ∂L/∂y[b, h, w, o]
 * i.e. conv2d(xᵀ [c, H, W, b], ∂yᵀ [h, w, b, o], dilation s), cropped to the kernel.
 */
function conv2dValid(tf: Tf, x: tfjs.Tensor4D, w: tfjs.Tensor4D, strides: [number, number]): tfjs.Tensor4D {
  const f = tf.customGrad(((xIn: tfjs.Tensor4D, wIn: tfjs.Tensor4D, save: SaveFunc) => {
    save([xIn, wIn]);
    const value = tf.conv2d(xIn, wIn, strides, 'valid');
    const gradFunc = (d: tfjs.Tensor4D, saved: tfjs.Tensor[]) => {
      const [xx, ww] = saved as [tfjs.Tensor4D, tfjs.Tensor4D];
      const dx = tf.conv2dTranspose(d, ww, xx.shape, strides, 'valid');
      const [kh, kw] = ww.shape;
      const xt = tf.transpose(xx, [3, 1, 2, 0]) as tfjs.Tensor4D;
      const dyt = tf.transpose(d, [1, 2, 0, 3]) as tfjs.Tensor4D;
      const full = tf.conv2d(xt, dyt, 1, 'valid', 'NHWC', strides);
      const dw = tf.transpose(tf.slice(full, [0, 0, 0, 0], [-1, kh, kw, -1]), [1, 2, 0, 3]);
      return [dx, dw];
    };
    return { value, gradFunc };
  }) as unknown as Parameters<Tf['customGrad']>[0]);
  return f(x, w) as tfjs.Tensor4D;
}

const conv: OpImpl = (a) => {
  const tf = a.tf;
  const x = a.tensor(0);
  const w = a.tensor(1); // [O, I/group, kh, kw]
  if (x.rank !== 4) throw new UserError(`Conv '${a.node.name}': only 2-D convolutions are supported (input rank ${x.rank})`);
  if (a.int('group', 1) !== 1) throw new UserError(`Conv '${a.node.name}': grouped convolution (group ${a.int('group', 1)}) is not supported by the tfjs executor`);
  if ((a.intList('dilations') ?? [1, 1]).some((d) => d !== 1)) throw new UserError(`Conv '${a.node.name}': dilated convolution is not supported by the tfjs executor`);
  const k = [w.shape[2]!, w.shape[3]!];
  const s = (a.intList('strides') ?? [1, 1]) as [number, number];
  const pads = spatialPads(a, x.shape[2]!, x.shape[3]!, k, s);
  const xn = padNhwc(tf, tf.transpose(x, [0, 2, 3, 1]), pads) as tfjs.Tensor4D;
  const wn = tf.transpose(w, [2, 3, 1, 0]) as tfjs.Tensor4D;
  let y: tfjs.Tensor = conv2dValid(tf, xn, wn, s);
  if (a.has(2)) y = tf.add(y, a.tensor(2));
  return tf.transpose(y, [0, 3, 1, 2]);
};

const maxPool: OpImpl = (a) => {
  const tf = a.tf;
  const x = a.tensor(0);
  const k = a.intList('kernel_shape')!;
  const s = a.intList('strides') ?? [1, 1];
  if ((a.intList('dilations') ?? [1, 1]).some((d) => d !== 1)) throw new UserError(`MaxPool '${a.node.name}': dilations are not supported by the tfjs executor`);
  const pads = spatialPads(a, x.shape[2]!, x.shape[3]!, k, s);
  if (a.int('ceil_mode', 0) === 1) {
    // extra bottom/right padding so the last partial window counts
    [x.shape[2]!, x.shape[3]!].forEach((n, d) => {
      const span = n + pads[d]! + pads[d + 2]! - k[d]!;
      const rem = span % s[d]!;
      if (rem !== 0) pads[d + 2]! += s[d]! - rem;
    });
  }
  const xn = padNhwc(tf, tf.transpose(x, [0, 2, 3, 1]), pads, -3.4e38) as tfjs.Tensor4D;
  const y = tf.maxPool(xn, k as [number, number], s as [number, number], 'valid');
  return tf.transpose(y, [0, 3, 1, 2]);
};

export const CONV_OPS: readonly OpEntry[] = [
  ['Conv', conv],
  ['MaxPool', maxPool],
];
