import { UserError } from '../../../errors.js';
import { toFloat32 } from '../../../model/pack.js';
import { expandGrid } from '../fake-quant.js';
import { decodeNBits, storedZeroPoints } from '../matmulnbits.js';
import { computedNBitsInputs } from '../trainables.js';
import { matmul } from './linear.js';
import type { OpImpl, OpEntry } from './types.js';

/**
 * Weight dequantization. A stored (non-trainable) weight is dequantized once and kept as a constant;
 * a trainable one goes through its fake-quantized variable (src/train/fake-quant.ts).
 */

/** DequantizeLinear: (x − zero_point) · scale, per tensor, per axis or blocked. */
const dequantizeLinear: OpImpl = (a) => {
  const fq = a.fakeQuant(0);
  if (fq) return fq.forward();
  const x = a.initializer(0);
  const scale = a.initializer(1);
  const variableGrid = [1, 2].some((i) => a.has(i) && a.val(i) instanceof a.tf.Variable);
  if (x && scale && !variableGrid) {
    const zero = a.has(2) ? a.initializer(2) : undefined;
    return a.memo(() => {
      const grid = expandGrid(x.dims, scale, zero, a.int('axis', 1), a.int('block_size', 0));
      const q = toFloat32(x.dataType, x.data, x.dims.reduce((p, d) => p * d, 1));
      const w = q.map((v, i) => (v - grid.zero[i]!) * grid.scale[i]!);
      return a.tf.tensor(w, x.dims, 'float32');
    });
  }
  // activations (QDQ around activations): per-tensor or per-axis broadcast in tfjs
  const tf = a.tf;
  const xt = tf.cast(a.tensor(0), 'float32');
  const rank = xt.rank;
  const axis = a.int('axis', 1);
  const ax = axis < 0 ? axis + rank : axis;
  const fit = (t: ReturnType<typeof a.tensor>) => (t.rank === 1 && t.size > 1 ? tf.reshape(t, xt.shape.map((d, i) => (i === ax ? d : 1))) : t);
  const s = fit(tf.cast(a.tensor(1), 'float32'));
  const z = a.has(2) ? fit(tf.cast(a.tensor(2), 'float32')) : undefined;
  return tf.mul(z ? tf.sub(xt, z) : xt, s);
};

/** com.microsoft MatMulNBits: y = x · Wᵀ with W [N, K] dequantized from B's blocks. */
const matMulNBits: OpImpl = (a) => {
  const tf = a.tf;
  const fq = a.fakeQuant(1);
  const Wt = fq
    ? tf.transpose(fq.forward())
    : a.memo(() => {
        const B = a.initializer(1);
        const scales = a.initializer(2);
        if (!B || !scales) throw new UserError(computedNBitsInputs(a.node));
        const zeros = a.has(3) ? a.initializer(3) : undefined;
        if (a.has(3) && !zeros) throw new UserError(computedNBitsInputs(a.node));
        const layout = { N: a.int('N', 0), K: a.int('K', 0), bits: a.int('bits', 4), block: a.int('block_size', 32) };
        const d = decodeNBits(B.data, toFloat32(scales.dataType, scales.data), zeros && storedZeroPoints(zeros), layout);
        const w = d.codes.map((q, i) => (q - d.zero[i]!) * d.scale[i]!);
        return tf.transpose(tf.tensor(w, [layout.N, layout.K], 'float32'));
      });
  let y = matmul(tf, a.tensor(0), Wt);
  if (a.has(5)) y = tf.add(y, a.tensor(5));
  return y;
};

export const QUANT_OPS: readonly OpEntry[] = [
  ['DequantizeLinear', dequantizeLinear],
  ['MatMulNBits', matMulNBits, 'com.microsoft'],
];
