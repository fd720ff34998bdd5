import { normAxis } from '../host.js';
import type { OpArgs, OpImpl, OpEntry } from './types.js';

/** Reductions and normalisations. */

/** Axes from the input (ReduceSum ≥ 13, the others ≥ 18) or the attribute; none means all. */
function reduceAxes(a: OpArgs, rank: number): number[] {
  const axes = a.has(1) ? a.ints(1) : a.intList('axes');
  if (!axes || axes.length === 0) return a.int('noop_with_empty_axes', 0) ? [] : [...Array(rank).keys()];
  return axes.map((x) => normAxis(x, rank));
}

function reduce(kind: 'mean' | 'max' | 'sum'): OpImpl {
  return (a) => {
    const x = a.tensor(0);
    const axes = reduceAxes(a, x.rank);
    if (axes.length === 0) return x;
    const keep = a.int('keepdims', 1) === 1;
    const tf = a.tf;
    return kind === 'mean' ? tf.mean(x, axes, keep) : kind === 'max' ? tf.max(x, axes, keep) : tf.sum(x, axes, keep);
  };
}

/** Softmax: along `axis` from opset 13; before that over the flattened dims from `axis` on. */
const softmax: OpImpl = (a) => {
  const x = a.tensor(0);
  const tf = a.tf;
  if (a.opset >= 13) {
    const ax = normAxis(a.int('axis', -1), x.rank);
    if (ax === x.rank - 1) return tf.softmax(x);
    const perm = [...Array(x.rank).keys()];
    perm[ax] = x.rank - 1;
    perm[x.rank - 1] = ax;
    return tf.transpose(tf.softmax(tf.transpose(x, perm)), perm);
  }
  const ax = normAxis(a.int('axis', 1), x.rank);
  const lead = x.shape.slice(0, ax).reduce((p, q) => p * q, 1);
  return tf.reshape(tf.softmax(tf.reshape(x, [lead, x.size / lead])), x.shape);
};

/** LayerNormalization: (x − mean) / sqrt(var + ε) · scale + bias over the dims from `axis` on. */
const layerNorm: OpImpl = (a) => {
  const x = a.tensor(0);
  const tf = a.tf;
  const ax = normAxis(a.int('axis', -1), x.rank);
  const axes = [...Array(x.rank - ax).keys()].map((i) => ax + i);
  const mean = tf.mean(x, axes, true);
  const centred = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centred), axes, true);
  let y = tf.mul(tf.div(centred, tf.sqrt(tf.add(variance, a.float('epsilon', 1e-5)))), a.tensor(1));
  if (a.has(2)) y = tf.add(y, a.tensor(2));
  return y;
};

const globalAveragePool: OpImpl = (a) => {
  const x = a.tensor(0);
  return a.tf.mean(x, [...Array(x.rank - 2).keys()].map((i) => i + 2), true);
};

export const REDUCE_OPS: readonly OpEntry[] = [
  ['ReduceMean', reduce('mean')],
  ['ReduceMax', reduce('max')],
  ['ReduceSum', reduce('sum')],
  ['Softmax', softmax],
  ['LayerNormalization', layerNorm],
  ['GlobalAveragePool', globalAveragePool],
];
