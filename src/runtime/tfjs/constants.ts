import type { Model } from '../../model/model.js';
import { findAttribute } from '../../model/graph.js';
import { int64ToNumber, type NodeProto } from '../../model/onnx-schema.js';
import type { Tf } from '../tf.js';
import { decodeTensor, hostOf, type HostArray } from './host.js';
import type { Val } from './ops/types.js';

/** Float constants larger than this go to tfjs once; smaller ones and all integers stay on the host. */
const HOST_FLOAT_LIMIT = 64;

/** An initializer or Constant value as the executor holds it. */
export function constantVal(tf: Tf, h: HostArray): Val {
  if (h.dtype !== 'float32' || h.size <= HOST_FLOAT_LIMIT) return h;
  return tf.keep(tf.tensor(h.data as Float32Array, h.shape, 'float32'));
}

/** A Constant node's value (value tensor, or the value_float(s) / value_int(s) shorthands). */
export function constantNodeValue(model: Model, node: NodeProto): HostArray {
  const value = findAttribute(node, 'value');
  if (value?.t) return decodeTensor(model.tensor(value.t));
  const f = findAttribute(node, 'value_float');
  if (f) return hostOf('float32', [], [f.f ?? 0]);
  const fs = findAttribute(node, 'value_floats');
  if (fs) return hostOf('float32', [fs.floats?.length ?? 0], fs.floats ?? []);
  const i = findAttribute(node, 'value_int');
  if (i) return hostOf('int32', [], [int64ToNumber(i.i)]);
  const is = findAttribute(node, 'value_ints');
  if (is) return hostOf('int32', [is.ints?.length ?? 0], (is.ints ?? []).map(int64ToNumber));
  throw new Error(`Constant '${node.name}': no supported value attribute`);
}
