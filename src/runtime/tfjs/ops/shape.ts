import type * as tfjs from '@tensorflow/tfjs';
import { concatHost, expandHost, broadcastShapes, HostArray, hostOf, normAxis, reshapeTarget, sliceBounds, sliceHost } from '../host.js';
import { broadcastTo } from '../custom-grad.js';
import { gather } from './gather.js';
import { isHost, type OpArgs, type OpImpl, type Val, type OpEntry } from './types.js';

/** Shape and layout ops: host arrays stay on the host, tensors go through tfjs. */

function shapeOf(v: Val): number[] {
  return isHost(v) ? v.shape : v.shape;
}

function reshapeVal(a: OpArgs, v: Val, shape: number[]): Val {
  if (isHost(v)) return new HostArray(v.dtype, shape, v.data);
  return a.tf.reshape(v, shape);
}

/** Axes from the `axes` input (opset ≥ 13) or attribute. */
function axesOf(a: OpArgs, inputIndex: number): number[] | undefined {
  if (a.has(inputIndex)) return a.ints(inputIndex);
  return a.intList('axes');
}

const shape: OpImpl = (a) => {
  const s = shapeOf(a.val(0));
  const rank = s.length;
  const start = normAxis(a.int('start', 0), rank);
  const end = Math.min(normAxis(a.int('end', rank), rank), rank);
  const dims = s.slice(Math.max(start, 0), end);
  return hostOf('int32', [dims.length], dims);
};

const reshape: OpImpl = (a) => {
  const v = a.val(0);
  const spec = a.has(1) ? a.ints(1) : (a.intList('shape') ?? []);
  return reshapeVal(a, v, reshapeTarget(shapeOf(v), spec, a.int('allowzero', 0) === 1));
};

const flatten: OpImpl = (a) => {
  const v = a.val(0);
  const s = shapeOf(v);
  const ax = normAxis(a.int('axis', 1), s.length);
  const lead = s.slice(0, ax).reduce((x, y) => x * y, 1);
  return reshapeVal(a, v, [lead, s.slice(ax).reduce((x, y) => x * y, 1)]);
};

const unsqueeze: OpImpl = (a) => {
  const v = a.val(0);
  const s = [...shapeOf(v)];
  const axes = (axesOf(a, 1) ?? []).map((x) => normAxis(x, s.length + (axesOf(a, 1)?.length ?? 0))).sort((x, y) => x - y);
  for (const ax of axes) s.splice(ax, 0, 1);
  return reshapeVal(a, v, s);
};

const squeeze: OpImpl = (a) => {
  const v = a.val(0);
  const s = shapeOf(v);
  const axes = axesOf(a, 1)?.map((x) => normAxis(x, s.length));
  return reshapeVal(a, v, s.filter((d, i) => (axes ? !axes.includes(i) : d !== 1)));
};

const concat: OpImpl = (a) => {
  const axis = a.int('axis', 0);
  const present = [...Array(a.inputCount).keys()].filter((i) => a.has(i));
  if (a.allHost()) return concatHost(present.map((i) => a.host(i)).filter((h) => h.size > 0 || present.length === 1), axis);
  const ts = present.map((i) => a.tensor(i)).filter((t) => t.size > 0);
  const dtype = ts.some((t) => t.dtype === 'float32') ? 'float32' : ts[0]!.dtype;
  return a.tf.concat(ts.map((t) => (t.dtype === dtype ? t : a.tf.cast(t, dtype))), normAxis(axis, ts[0]!.rank));
};

const transpose: OpImpl = (a) => {
  const x = a.tensor(0);
  const perm = a.intList('perm') ?? [...Array(x.rank).keys()].reverse();
  return a.tf.transpose(x, perm);
};

const slice: OpImpl = (a) => {
  const v = a.val(0);
  const b =
    a.opset >= 10
      ? sliceBounds(shapeOf(v), a.ints(1), a.ints(2), a.has(3) ? a.ints(3) : undefined, a.has(4) ? a.ints(4) : undefined)
      : sliceBounds(shapeOf(v), a.intList('starts') ?? [], a.intList('ends') ?? [], a.intList('axes'), undefined);
  if (isHost(v)) return sliceHost(v, b);
  if (b.step.every((s) => s === 1)) return a.tf.slice(v, b.begin, b.end.map((e, d) => e - b.begin[d]!));
  return a.tf.stridedSlice(v, b.begin, b.end, b.step);
};

const split: OpImpl = (a) => {
  const x = a.tensor(0);
  const ax = normAxis(a.int('axis', 0), x.rank);
  const count = a.node.output?.length ?? 1;
  let sizes = a.has(1) ? a.ints(1) : a.intList('split');
  if (!sizes) {
    const n = x.shape[ax]!;
    const each = Math.ceil(n / count);
    sizes = [...Array(count).keys()].map((i) => Math.min(each, n - i * each));
  }
  return a.tf.split(x, sizes, ax);
};

const expand: OpImpl = (a) => {
  const target = a.ints(1);
  const v = a.val(0);
  if (isHost(v)) return expandHost(v, target);
  const out = broadcastShapes(v.shape, target);
  return broadcastTo(a.tf, v, out);
};

const constantOfShape: OpImpl = (a) => {
  const dims = a.ints(0);
  const proto = a.tensorAttr('value') ?? hostOf('float32', [1], [0]);
  const n = dims.reduce((x, y) => x * y, 1);
  return new HostArray(proto.dtype, dims, (proto.data.constructor as typeof Float32Array).from({ length: n }, () => proto.data[0]!) as HostArray['data']);
};

const range: OpImpl = (a) => {
  const [start, limit, delta] = [a.host(0), a.host(1), a.host(2)].map((h) => h.data[0]!) as [number, number, number];
  const n = Math.max(Math.ceil((limit - start) / delta), 0);
  return hostOf(a.host(0).dtype, [n], Array.from({ length: n }, (_, i) => start + i * delta));
};

/** Trilu: keep the upper (or lower) triangle of the last two dims from diagonal k. */
const trilu: OpImpl = (a) => {
  const v = a.val(0);
  const s = shapeOf(v);
  const k = a.has(1) ? a.ints(1)[0]! : 0;
  const upper = a.int('upper', 1) === 1;
  const rows = s[s.length - 2]!;
  const cols = s[s.length - 1]!;
  const keep = (i: number, j: number) => (upper ? j - i >= k : j - i <= k);
  if (isHost(v)) {
    const out = v.data.slice();
    for (let o = 0; o < out.length; o++) {
      const j = o % cols;
      const i = Math.floor(o / cols) % rows;
      if (!keep(i, j)) out[o] = 0;
    }
    return new HostArray(v.dtype, s, out);
  }
  const mask = hostOf('bool', [rows, cols], Array.from({ length: rows * cols }, (_, o) => (keep(Math.floor(o / cols), o % cols) ? 1 : 0)));
  const tf = a.tf;
  const m = tf.broadcastTo(a.memo(() => tf.tensor(mask.data, mask.shape, 'bool')), s);
  return tf.where(m as tfjs.Tensor, v, tf.zerosLike(v));
};

export const SHAPE_OPS: readonly OpEntry[] = [
  ['Shape', shape],
  ['Reshape', reshape],
  ['Flatten', flatten],
  ['Unsqueeze', unsqueeze],
  ['Squeeze', squeeze],
  ['Concat', concat],
  ['Transpose', transpose],
  ['Slice', slice],
  ['Split', split],
  ['Expand', expand],
  ['ConstantOfShape', constantOfShape],
  ['Range', range],
  ['Trilu', trilu],
  ['Gather', gather],
];
