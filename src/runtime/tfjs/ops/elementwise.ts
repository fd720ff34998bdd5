import type * as tfjs from '@tensorflow/tfjs';
import type { Tf } from '../../tf.js';
import { broadcastTo, straightThrough } from '../custom-grad.js';
import { broadcastShapes, castHost, hostDType, mapArrays, type HostDType } from '../host.js';
import { isHost, type OpArgs, type OpImpl, type Val, type OpEntry } from './types.js';

/** Elementwise ops: on the host when every input is a host array, else in tfjs. */

/** Both operands in one tfjs dtype (int codes carried as float32 meet float32 here). */
function unify(tf: Tf, a: tfjs.Tensor, b: tfjs.Tensor): [tfjs.Tensor, tfjs.Tensor] {
  if (a.dtype === b.dtype) return [a, b];
  return [a.dtype === 'float32' ? a : tf.cast(a, 'float32'), b.dtype === 'float32' ? b : tf.cast(b, 'float32')];
}

function binary(hostFn: (x: number, y: number) => number, tfFn: (tf: Tf, x: tfjs.Tensor, y: tfjs.Tensor) => tfjs.Tensor, compare = false): OpImpl {
  return (a) => {
    if (a.allHost()) {
      const x = a.host(0);
      const y = a.host(1);
      const dtype: HostDType = compare ? 'bool' : x.dtype;
      const isInt = x.dtype === 'int32' && !compare;
      return mapArrays([x, y], dtype, isInt ? (p, q) => Math.trunc(hostFn(p, q)) : hostFn);
    }
    const [x, y] = unify(a.tf, a.tensor(0), a.tensor(1));
    return tfFn(a.tf, x, y);
  };
}

function unary(hostFn: ((x: number) => number) | undefined, tfFn: (tf: Tf, x: tfjs.Tensor) => tfjs.Tensor): OpImpl {
  return (a) => {
    if (hostFn && a.allHost()) {
      const x = a.host(0);
      return mapArrays([x], x.dtype, hostFn);
    }
    return tfFn(a.tf, a.tensor(0));
  };
}

/** x^y with a constant exponent specialised: x² is a Square, whose gradient tfjs computes without Log. */
const pow: OpImpl = (a) => {
  if (a.allHost()) return mapArrays([a.host(0), a.host(1)], a.host(0).dtype, (x, y) => x ** y);
  const e = a.val(1);
  if (isHost(e) && e.size === 1) {
    const k = e.data[0]!;
    if (k === 2) return a.tf.square(a.tensor(0));
    if (k === 1) return a.tensor(0);
    if (k === 0.5) return a.tf.sqrt(a.tensor(0));
  }
  const [x, y] = unify(a.tf, a.tensor(0), a.tensor(1));
  return a.tf.pow(x, y);
};

/** Round with a straight-through gradient (W8A8's activation quantization trains through it). */
const round: OpImpl = (a) => {
  if (a.allHost()) return mapArrays([a.host(0)], 'float32', (x) => Math.round(x) - (Math.abs(x % 1) === 0.5 && Math.round(x) % 2 !== 0 ? 1 : 0));
  const tf = a.tf;
  return straightThrough(tf, a.tensor(0), (x) => tf.round(x));
};

/** Clip with bounds from inputs (opset ≥ 11) or attributes. */
const clip: OpImpl = (a) => {
  const lo = a.has(1) ? a.host(1).data[0]! : a.float('min', -Infinity);
  const hi = a.has(2) ? a.host(2).data[0]! : a.float('max', Infinity);
  if (a.allHost()) return mapArrays([a.host(0)], a.host(0).dtype, (x) => Math.min(Math.max(x, lo), hi));
  return a.tf.clipByValue(a.tensor(0), Math.max(lo, -3.4e38), Math.min(hi, 3.4e38));
};

function variadic(hostFn: (x: number, y: number) => number, tfFn: (tf: Tf, x: tfjs.Tensor, y: tfjs.Tensor) => tfjs.Tensor): OpImpl {
  return (a) => {
    const present = [...Array(a.inputCount).keys()].filter((i) => a.has(i));
    if (a.allHost()) return present.slice(1).reduce((acc, i) => mapArrays([acc, a.host(i)], acc.dtype, hostFn), a.host(present[0]!));
    return present.slice(1).reduce((acc, i) => tfFn(a.tf, ...unify(a.tf, acc, a.tensor(i))), a.tensor(present[0]!));
  };
}

const where: OpImpl = (a) => {
  if (a.allHost()) return mapArrays([a.host(0), a.host(1), a.host(2)], a.host(1).dtype, (c, x, y) => (c ? x : y));
  const tf = a.tf;
  const [x, y] = unify(tf, a.tensor(1), a.tensor(2));
  const c = a.tensor(0);
  const shape = broadcastShapes(broadcastShapes(c.shape, x.shape), y.shape);
  const fit = (t: tfjs.Tensor) => (t.dtype === 'bool' ? (sameShape(t.shape, shape) ? t : tf.broadcastTo(t, shape)) : broadcastTo(tf, t, shape));
  // a constant scalar branch (the causal mask's 0 and −∞) as Fill: the wasm Tile behind broadcastTo took 3.3 ms for [4,1,128,128]
  const branch = (i: number, t: tfjs.Tensor) => {
    const v = a.val(i);
    return isHost(v) && v.size === 1 && t.dtype !== 'bool' && !sameShape(t.shape, shape) ? tf.fill(shape, Number(v.data[0]), t.dtype) : fit(t);
  };
  return tf.where(fit(c.dtype === 'bool' ? c : tf.cast(c, 'bool')) as tfjs.Tensor, branch(1, x), branch(2, y));
};

/**
 * Or / And of tensors as 0/1 float arithmetic: the wasm LogicalOr with broadcasting took 4.8 ms of
 * CPU for the causal mask's [128,128] | [4,1,1,128], the cast-add-compare 1.5 ms. Exact (0/1 sums).
 */
function logical(op: 'or' | 'and'): (tf: Tf, x: tfjs.Tensor, y: tfjs.Tensor) => tfjs.Tensor {
  return (tf, x, y) => {
    const [p, q] = [tf.cast(x, 'float32'), tf.cast(y, 'float32')];
    return op === 'or' ? tf.greater(tf.add(p, q), 0) : tf.greater(tf.mul(p, q), 0);
  };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Cast. Float → small-integer casts of activations (W8A8) keep float32 storage with a straight-through gradient. */
const cast: OpImpl = (a) => {
  const to = a.int('to', 1);
  const dtype = hostDType(to);
  if (a.allHost()) return castHost(a.host(0), dtype);
  const tf = a.tf;
  const x = a.tensor(0);
  if (dtype === 'bool') return x.dtype === 'bool' ? x : tf.notEqual(x, tf.scalar(0, x.dtype));
  if (dtype === 'float32') return x.dtype === 'float32' ? x : tf.cast(x, 'float32');
  if (x.dtype !== 'float32') return x;
  if (to === 6 || to === 7) return tf.cast(x, 'int32');
  return straightThrough(tf, x, (v) => tf.mul(tf.sign(v), tf.floor(tf.abs(v))));
};

const identity: OpImpl = (a) => a.val(0);

export const ELEMENTWISE: readonly OpEntry[] = [
  ['Add', binary((x, y) => x + y, (tf, x, y) => tf.add(x, y))],
  ['Sub', binary((x, y) => x - y, (tf, x, y) => tf.sub(x, y))],
  ['Mul', binary((x, y) => x * y, (tf, x, y) => tf.mul(x, y))],
  ['Div', binary((x, y) => x / y, (tf, x, y) => (x.dtype === 'int32' ? tf.floorDiv(x, y) : tf.div(x, y)))],
  ['Equal', binary((x, y) => (x === y ? 1 : 0), (tf, x, y) => tf.equal(x, y), true)],
  ['Less', binary((x, y) => (x < y ? 1 : 0), (tf, x, y) => tf.less(x, y), true)],
  ['Greater', binary((x, y) => (x > y ? 1 : 0), (tf, x, y) => tf.greater(x, y), true)],
  ['Pow', pow],
  ['Sqrt', unary(Math.sqrt, (tf, x) => tf.sqrt(x))],
  ['Reciprocal', unary((x) => 1 / x, (tf, x) => tf.reciprocal(x))],
  ['Neg', unary((x) => -x, (tf, x) => tf.neg(x))],
  ['Abs', unary(Math.abs, (tf, x) => tf.abs(x))],
  ['Exp', unary(Math.exp, (tf, x) => tf.exp(x))],
  ['Log', unary(Math.log, (tf, x) => tf.log(x))],
  ['Cos', unary(Math.cos, (tf, x) => tf.cos(x))],
  ['Sin', unary(Math.sin, (tf, x) => tf.sin(x))],
  ['Floor', unary(Math.floor, (tf, x) => tf.floor(x))],
  ['Ceil', unary(Math.ceil, (tf, x) => tf.ceil(x))],
  ['Relu', unary((x) => Math.max(x, 0), (tf, x) => tf.relu(x))],
  ['Sigmoid', unary((x) => 1 / (1 + Math.exp(-x)), (tf, x) => tf.sigmoid(x))],
  ['Tanh', unary(Math.tanh, (tf, x) => tf.tanh(x))],
  ['Erf', unary(undefined, (tf, x) => tf.erf(x))],
  ['Not', unary((x) => (x ? 0 : 1), (tf, x) => tf.logicalNot(x))],
  ['Or', binary((x, y) => (x || y ? 1 : 0), logical('or'), true)],
  ['And', binary((x, y) => (x && y ? 1 : 0), logical('and'), true)],
  ['Round', round],
  ['Clip', clip],
  ['Max', variadic(Math.max, (tf, x, y) => tf.maximum(x, y))],
  ['Min', variadic(Math.min, (tf, x, y) => tf.minimum(x, y))],
  ['Sum', variadic((x, y) => x + y, (tf, x, y) => tf.add(x, y))],
  ['Where', where],
  ['Cast', cast],
  ['Identity', identity],
  ['Dropout', identity],
];

export type { Val, OpArgs };
