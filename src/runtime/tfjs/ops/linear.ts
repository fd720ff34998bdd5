import type * as tfjs from '@tensorflow/tfjs';
import type { Tf } from '../../tf.js';
import { broadcastTo, customGrad, type SaveFunc } from '../custom-grad.js';
import { batchedMatMul } from './small-inner.js';
import type { OpImpl, OpEntry } from './types.js';

/** Matrix products. */

/**
 * A 2-D product whose gradient multiplies explicitly transposed operands:
 *   ∂L/∂A = ∂L/∂Y · Bᵀ,   ∂L/∂B = Aᵀ · ∂L/∂Y
 * The wasm backend runs a 2-D MatMul on XNNPACK only without transpose flags, and tfjs' own
 * gradient passes them: 512×64·(172×64)ᵀ took 5.6 ms of CPU with the flag, 1.4 ms with the
 * transpose done first (bench/RESULTS.md, distillation step profile). Same products, same sums.
 */
export function matMul2d(tf: Tf, a: tfjs.Tensor, b: tfjs.Tensor): tfjs.Tensor {
  return customGrad(tf, (x, y, save) => {
    (save as unknown as SaveFunc)([x!, y!]);
    return {
      value: tf.matMul(x as tfjs.Tensor2D, y as tfjs.Tensor2D),
      gradFunc: (dy, saved) => [tf.matMul(dy, tf.transpose(saved[1]!)), tf.matMul(tf.transpose(saved[0]!), dy)],
    };
  })(a, b);
}

/**
 * numpy matmul semantics: rank-1 operands are promoted, batch dims broadcast. x[..., K] · W[K, N]
 * runs as one 2-D product (one kernel call, the common linear-layer case).
 */
export function matmul(tf: Tf, a: tfjs.Tensor, b: tfjs.Tensor): tfjs.Tensor {
  if (a.rank === 1) return tf.squeeze(matmul(tf, tf.reshape(a, [1, a.shape[0]!]), b), [-2]);
  if (b.rank === 1) return tf.squeeze(matmul(tf, a, tf.reshape(b, [b.shape[0]!, 1])), [-1]);
  const K = a.shape[a.rank - 1]!;
  if (b.rank === 2) {
    if (a.rank === 2) return matMul2d(tf, a, b);
    const lead = a.shape.slice(0, -1);
    return tf.reshape(matMul2d(tf, tf.reshape(a, [-1, K]), b), [...lead, b.shape[1]!]);
  }
  const rank = Math.max(a.rank, b.rank);
  const pad = (t: tfjs.Tensor) => (t.rank === rank ? t : tf.reshape(t, [...Array(rank - t.rank).fill(1), ...t.shape]));
  const [x, y] = [pad(a), pad(b)];
  const batch = x.shape.slice(0, -2).map((d, i) => Math.max(d, y.shape[i]!));
  const fit = (t: tfjs.Tensor) => {
    const want = [...batch, ...t.shape.slice(-2)];
    return broadcastTo(tf, t, want);
  };
  return batchedMatMul(tf, fit(x), fit(y));
}

const matMulOp: OpImpl = (a) => matmul(a.tf, a.tensor(0), a.tensor(1));

/** Gemm: α·A'·B' + β·C with optional transposes. */
const gemm: OpImpl = (a) => {
  const tf = a.tf;
  const A = a.tensor(0);
  const B = a.tensor(1);
  let y = matMul2d(tf, a.int('transA', 0) === 1 ? tf.transpose(A) : A, a.int('transB', 0) === 1 ? tf.transpose(B) : B);
  const alpha = a.float('alpha', 1);
  if (alpha !== 1) y = tf.mul(y, alpha);
  if (a.has(2)) {
    const beta = a.float('beta', 1);
    const c = a.tensor(2);
    y = tf.add(y, beta === 1 ? c : tf.mul(c, beta));
  }
  return y;
};

/** MatMulInteger: (A − a₀)·(B − b₀), computed in float32 (exact while |Σ| < 2²⁴). */
const matMulInteger: OpImpl = (a) => {
  const tf = a.tf;
  const fq = a.fakeQuant(1);
  const f = (t: tfjs.Tensor) => (t.dtype === 'float32' ? t : tf.cast(t, 'float32'));
  let x = f(a.tensor(0));
  let w = fq ? fq.forward() : a.memo(() => f(a.tensor(1)));
  if (a.has(2)) x = tf.sub(x, f(a.tensor(2)));
  if (a.has(3)) w = tf.sub(w, f(a.tensor(3)));
  return matmul(tf, x, w);
};

/**
 * Einsum with two operands and no ellipsis: contracted letters become one inner dimension, letters
 * shared with the output a batch dimension, so the product is one batched MatMul between transposes.
 */
const einsum: OpImpl = (a) => {
  const tf = a.tf;
  const eq = a.str('equation', '').replace(/\s/g, '');
  const [lhs, out] = eq.split('->') as [string, string | undefined];
  const terms = lhs.split(',');
  if (terms.length !== 2 || out === undefined || eq.includes('.')) throw new Error(`Einsum '${eq}': only two operands with an explicit output are supported`);
  const [ta, tb] = terms as [string, string];
  let x = a.tensor(0);
  let y = a.tensor(1);
  // letters only in one operand and not in the output are summed first
  const sumAway = (t: tfjs.Tensor, term: string, other: string): [tfjs.Tensor, string] => {
    const drop = [...term].map((c, i) => (!other.includes(c) && !out.includes(c) ? i : -1)).filter((i) => i >= 0);
    return drop.length ? [tf.sum(t, drop), [...term].filter((_, i) => !drop.includes(i)).join('')] : [t, term];
  };
  let sa: string, sb: string;
  [x, sa] = sumAway(x, ta, tb);
  [y, sb] = sumAway(y, tb, ta);
  const batch = [...sa].filter((c) => sb.includes(c) && out.includes(c));
  const contract = [...sa].filter((c) => sb.includes(c) && !out.includes(c));
  const left = [...sa].filter((c) => !sb.includes(c));
  const right = [...sb].filter((c) => !sa.includes(c));
  const dim = (t: tfjs.Tensor, term: string, c: string) => t.shape[term.indexOf(c)]!;
  const size = (t: tfjs.Tensor, term: string, cs: string[]) => cs.reduce((p, c) => p * dim(t, term, c), 1);
  const xs = tf.reshape(tf.transpose(x, [...batch, ...left, ...contract].map((c) => sa.indexOf(c))), [size(x, sa, batch), size(x, sa, left), size(x, sa, contract)]);
  const ys = tf.reshape(tf.transpose(y, [...batch, ...contract, ...right].map((c) => sb.indexOf(c))), [size(y, sb, batch), size(y, sb, contract), size(y, sb, right)]);
  const prodOrder = [...batch, ...left, ...right];
  const prodShape = prodOrder.map((c) => (sa.includes(c) ? dim(x, sa, c) : dim(y, sb, c)));
  const prod = tf.reshape(tf.matMul(xs, ys), prodShape);
  return tf.transpose(prod, [...out].map((c) => prodOrder.indexOf(c)));
};

export const LINEAR_OPS: readonly OpEntry[] = [
  ['MatMul', matMulOp],
  ['Gemm', gemm],
  ['MatMulInteger', matMulInteger],
  ['Einsum', einsum],
];
