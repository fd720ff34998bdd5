import type { ValueRange } from '../calibrate/ranges.js';
import { UserError } from '../errors.js';
import { byteLength, DataType, elementCount } from '../model/dtype.js';
import type { Model } from '../model/model.js';
import { int64ToNumber, type NodeProto, type TensorProto } from '../model/onnx-schema.js';
import { toFloat32 } from '../model/pack.js';
import { maxAbsOf } from '../calibrate/ranges.js';

/**
 * Which nodes of a float32 graph compute in float16 and which stay float32, decided once before the
 * graph changes. A node stays float32 when
 *   - its op is in `keepOps` (softmax, the norms' reductions and square roots, exp/log, RoPE's sin/cos):
 *     accumulations and arguments float16 would round or overflow;
 *   - its name (or an output's) matches `keepFp32`;
 *   - pare cannot convert it (control flow, ops with typed side inputs such as Resize's scales,
 *     DequantizeLinear's float32 scales, other domains' ops);
 *   - a float value it reads or writes reached more than `limit` in magnitude on the calibration
 *     data (or was inf/NaN): large values stay float32 everywhere they flow;
 *   - it reads no float16 activation and no weight: position and mask arithmetic computed from
 *     integers and small constants keeps its float32 precision.
 * Every other node reading or writing float values computes in float16.
 */

export type Precision = 'float16' | 'float32';
export type KeepReason = 'op' | 'keep_fp32' | 'unsupported' | 'range' | 'float32 inputs';

export interface NodePlan {
  precision: Precision;
  /** why a node stays float32 */
  reason?: KeepReason;
  /** range: the largest magnitude it reads or writes, and which value */
  maxAbs?: number;
  value?: string;
}

export interface F16Plan {
  /** nodes that read or write float32 values, in graph order */
  nodes: Map<NodeProto, NodePlan>;
  /** values of type float32 in the input graph: what the rewrite converts */
  float: Set<string>;
  /** values already float16 in the input graph */
  half: Set<string>;
}

export interface PlanOptions {
  keepOps: ReadonlySet<string>;
  keepFp32: readonly RegExp[];
  /** magnitudes above this stay float32 */
  limit: number;
  /** the graph's float inputs and outputs */
  io: Precision;
}

/** ONNX float16's largest finite value. */
export const FLOAT16_MAX = 65504;

export const DEFAULT_KEEP_OPS = [
  'Softmax',
  'LogSoftmax',
  'ReduceMean',
  'ReduceSum',
  'ReduceSumSquare',
  'ReduceL2',
  'ReduceLogSumExp',
  'LayerNormalization',
  'SimplifiedLayerNormalization',
  'RMSNormalization',
  'GroupNormalization',
  'InstanceNormalization',
  'Pow',
  'Sqrt',
  'Reciprocal',
  'Exp',
  'Log',
  'Sin',
  'Cos',
];

/** ops whose float inputs are not all of one type, or which make values pare does not type */
const UNSUPPORTED = new Set([
  'Resize',
  'Upsample',
  'RoiAlign',
  'NonMaxSuppression',
  'RandomNormal',
  'RandomNormalLike',
  'RandomUniform',
  'RandomUniformLike',
  'Multinomial',
  'Bernoulli',
  'EyeLike',
  'DequantizeLinear',
  'QuantizeLinear',
  'DynamicQuantizeLinear',
  'CumSum',
  'Range',
]);

/** com.microsoft ops that take float16 activations with the rest of their inputs (scales, bias) in the same type */
const HALF_CONTRIB = new Set(['MatMulNBits', 'GatherBlockQuantized']);

const CONTROL_FLOW = new Set(['If', 'Loop', 'Scan']);

/** ops that read any input type: their float inputs are never cast */
export const TYPE_AGNOSTIC_INPUTS = new Set(['Shape', 'Size', 'Cast']);

/** stored tensors of this many bytes or more are weights: a node reading one computes in float16 */
const WEIGHT_BYTES = 4096;
const WEIGHT_TYPES = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.UINT8, DataType.INT8, DataType.UINT4, DataType.INT4]);

function constantValue(node: NodeProto): TensorProto | undefined {
  return node.op_type === 'Constant' && (node.domain ?? '') === '' ? node.attribute?.find((a) => a.name === 'value')?.t : undefined;
}

function isWeight(t: TensorProto | undefined): boolean {
  if (!t || !WEIGHT_TYPES.has(t.data_type ?? 0)) return false;
  return byteLength(t.data_type ?? 0, elementCount((t.dims ?? []).map(int64ToNumber))) >= WEIGHT_BYTES;
}

export function planFloat16(model: Model, ranges: ReadonlyMap<string, ValueRange>, opts: PlanOptions): F16Plan {
  const graph = model.graph;
  const float = new Set<string>();
  const half = new Set<string>();
  const constants = new Map<string, TensorProto>();
  for (const t of graph.initializer ?? []) {
    constants.set(t.name ?? '', t);
    if (t.data_type === DataType.FLOAT) float.add(t.name ?? '');
    if (t.data_type === DataType.FLOAT16) half.add(t.name ?? '');
  }
  for (const v of graph.input ?? []) {
    const type = v.type?.tensor_type?.elem_type;
    if (type === DataType.FLOAT) float.add(v.name ?? '');
    if (type === DataType.FLOAT16) half.add(v.name ?? '');
  }
  for (const n of graph.node ?? []) {
    if (CONTROL_FLOW.has(n.op_type ?? '')) throw new UserError(`quantize.f16: ${model.path} has a ${n.op_type} node ('${n.name ?? ''}'); models with control flow are not converted to float16`);
    const value = constantValue(n);
    if (value) constants.set(n.output![0]!, value);
    for (const o of n.output ?? []) {
      const type = ranges.get(o)?.type;
      if (type === 'float32') float.add(o);
      if (type === 'float16') half.add(o);
    }
  }

  // |x| of constants, measured once each when a node reads them
  const constantMax = new Map<string, number>();
  const magnitude = (name: string): { max: number; value: string } => {
    const t = constants.get(name);
    if (t && !ranges.has(name)) {
      if (!constantMax.has(name)) {
        const host = model.tensor(t);
        constantMax.set(name, maxAbsOf(toFloat32(host.dataType, host.data, elementCount(host.dims))));
      }
      return { max: constantMax.get(name)!, value: name };
    }
    return { max: ranges.get(name)?.maxAbs ?? 0, value: name };
  };

  const nodes = new Map<NodeProto, NodePlan>();
  const precisionOf = new Map<string, Precision>();
  for (const v of graph.input ?? []) if (float.has(v.name ?? '')) precisionOf.set(v.name ?? '', opts.io);
  for (const n of graph.node ?? []) {
    if (constantValue(n)) continue;
    const ins = (n.input ?? []).filter((i) => i && float.has(i));
    const outs = (n.output ?? []).filter((o) => o && float.has(o));
    if (outs.length === 0 && (ins.length === 0 || TYPE_AGNOSTIC_INPUTS.has(n.op_type ?? ''))) continue;
    const plan = decide(n, ins, outs);
    nodes.set(n, plan);
    for (const o of outs) precisionOf.set(o, plan.precision);
  }
  return { nodes, float, half };

  function decide(n: NodeProto, ins: string[], outs: string[]): NodePlan {
    const op = n.op_type ?? '';
    const domain = n.domain ?? '';
    if (domain === '' && opts.keepOps.has(op)) return { precision: 'float32', reason: 'op' };
    if (opts.keepFp32.some((re) => re.test(n.name ?? '') || (n.output ?? []).some((o) => re.test(o)))) return { precision: 'float32', reason: 'keep_fp32' };
    if ((domain === '' || domain === 'ai.onnx') ? UNSUPPORTED.has(op) : !(domain === 'com.microsoft' && HALF_CONTRIB.has(op))) return { precision: 'float32', reason: 'unsupported' };
    let worst = { max: 0, value: '' };
    for (const v of [...ins, ...outs]) {
      const m = magnitude(v);
      if (!(m.max <= worst.max)) worst = m;
    }
    if (!(worst.max <= opts.limit)) return { precision: 'float32', reason: 'range', maxAbs: worst.max, value: worst.value };
    const readsHalf = (n.input ?? []).some((i) => i && (precisionOf.get(i) === 'float16' || (half.has(i) && !constants.has(i))));
    const readsWeight = (n.input ?? []).some((i) => i && isWeight(constants.get(i)));
    if (readsHalf || readsWeight) return { precision: 'float16' };
    return { precision: 'float32', reason: 'float32 inputs' };
  }
}
