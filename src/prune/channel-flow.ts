import { attrInt, attrInts, findAttribute, type GraphIndex } from '../model/graph.js';
import type { LinearLayer } from '../model/linears.js';
import type { HostTensor, Model } from '../model/model.js';
import type { NodeProto } from '../model/onnx-schema.js';
import { constantInts, shapeElements, type ConstantSource } from './shape-elements.js';

/**
 * Where the output channels of one linear layer (a Conv's filters, a Gemm's or MatMul's output
 * features) go, found by graph structure rather than names: forward from the layer's output through
 * ops that keep each channel apart (activations, BatchNormalization, pooling, Pad, Dropout,
 * elementwise ops with constants, Transpose, Squeeze/Unsqueeze, Flatten/Reshape that merge the channel
 * axis with the ones after or before it, channel Concats) to the layers that read them: a Conv's
 * input channels, a depthwise Conv (whose own channels go along), or a Gemm's/MatMul's input
 * features. Removing channel c then removes the producer's row c, the consumers' columns of channel
 * c, and element c of every per-channel constant on the way, and changes no output of the graph
 * when channel c is zero (a trace ends only in consumers whose output ignores a zero channel).
 *
 * A trace is refused, naming the op, when the channels reach a graph output, an op that mixes
 * channels (Softmax over them, LRN, a Reshape that splits the axis), another branch's values (a
 * residual Add: those channels are tied to another layer's), or an op this reader does not know.
 */

export interface ChannelLayout {
  /** the channel axis, counted from the end (1 = the last axis) */
  fromEnd: number;
  /** the tensor's rank, when known */
  rank?: number;
  /** this layer's first channel on the axis, and the axis length (a Concat puts other layers' channels beside them) */
  offset: number;
  total: number;
  /**
   * after a Flatten/Reshape merged the channel axis with others into the last axis: `major` when the
   * channel axis was the first merged (each channel a contiguous block of features, as NCHW flattens),
   * `minor` when it was the last (channels interleaved, as NHWC flattens)
   */
  flat?: 'major' | 'minor';
}

/** A constant read elementwise along the channels: its element at offset + c belongs to channel c. */
export interface VectorEdit {
  node: NodeProto;
  input: number;
  tensor: string;
  /** the constant's own axis that runs along the channels */
  axis: number;
  offset: number;
  total: number;
}

/** A Reshape target element that counts the channels (times the axes merged with them). */
export interface ReshapeEdit {
  source: ConstantSource;
  value: number;
  total: number;
}

export interface ChannelPlan {
  producer: LinearLayer;
  width: number;
  /** layers that read the channels as input features, with the layout they read them in */
  consumers: { layer: LinearLayer; layout: ChannelLayout }[];
  /** depthwise Convs the channels pass through (each loses the same channels) */
  depthwise: { layer: LinearLayer; layout: ChannelLayout }[];
  vectors: VectorEdit[];
  reshapes: ReshapeEdit[];
  /** every value the channels flow through: their declared shapes change */
  values: Set<string>;
}

export type ChannelTrace = { plan: ChannelPlan } | { refused: string };

const ELEMENTWISE = new Set(['Relu', 'LeakyRelu', 'PRelu', 'Elu', 'Selu', 'Celu', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Tanh', 'Softplus', 'Softsign', 'Erf', 'Gelu', 'Mish', 'ThresholdedRelu', 'Clip', 'Dropout', 'Identity', 'Cast', 'Neg', 'Abs', 'Exp', 'Sqrt', 'Reciprocal', 'Floor', 'Ceil', 'Round']);
/** ops of two or more inputs broadcast against each other */
const BROADCAST = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mean', 'PRelu']);
/** ops over the spatial axes of an [N, C, ...] tensor, channel by channel */
const SPATIAL = new Set(['MaxPool', 'AveragePool', 'LpPool', 'GlobalAveragePool', 'GlobalMaxPool', 'GlobalLpPool', 'Pad', 'Resize', 'Upsample']);
/** per-channel [C] parameters of [N, C, ...] normalisations, by input index */
const NORM_PARAMS: Record<string, number[]> = { BatchNormalization: [1, 2, 3, 4], InstanceNormalization: [1, 2] };
const REDUCE = new Set(['ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceSum', 'ReduceL1', 'ReduceL2', 'ReduceSumSquare', 'ReduceLogSumExp', 'ReduceProd']);

function describe(node: NodeProto): string {
  return `${node.op_type}${node.name ? ` '${node.name}'` : ''}`;
}

/** A constant value: an initializer or a Constant node's tensor. */
export function constantTensor(model: Model, index: GraphIndex, name: string): HostTensor | undefined {
  if (!name) return undefined;
  if (model.hasInitializer(name)) return model.tensor(name);
  const p = index.producer.get(name);
  const t = p?.op_type === 'Constant' ? findAttribute(p, 'value')?.t : undefined;
  return t ? model.tensor(t) : undefined;
}

function isConstant(model: Model, index: GraphIndex, name: string): boolean {
  return model.hasInitializer(name) || index.producer.get(name)?.op_type === 'Constant';
}

/** An int list given as an attribute (older opsets) or a constant input (newer ones); undefined when neither. */
function intsOf(model: Model, index: GraphIndex, node: NodeProto, attribute: string, input: number): number[] | undefined {
  const a = attrInts(node, attribute);
  if (a) return a;
  const name = node.input?.[input];
  return name ? constantInts(model, index, name)?.values : undefined;
}

class Refusal extends Error {}

function refuse(message: string): never {
  throw new Refusal(message);
}

/** Inputs of `node` that carry data the channels may flow through (the others are shapes, axes, scales). */
function dataInputs(node: NodeProto): number[] {
  const op = node.op_type ?? '';
  if (BROADCAST.has(op) || op === 'Concat') return (node.input ?? []).map((_, i) => i);
  return [0];
}

interface Tracer {
  model: Model;
  index: GraphIndex;
  layerOf: Map<NodeProto, LinearLayer>;
  plan: ChannelPlan;
  layouts: Map<string, ChannelLayout>;
}

/** The trace of `producer`'s output channels; `layers` are the model's linear layers (linears(model)). */
export function traceChannels(model: Model, index: GraphIndex, layers: readonly LinearLayer[], producer: LinearLayer): ChannelTrace {
  const rank = producer.kind === 'conv' ? producer.weightShape.length : producer.kind === 'gemm' ? 2 : undefined;
  if (producer.kind === 'conv' && (producer.group ?? 1) !== 1) return { refused: `it is a grouped Conv (group ${producer.group})` };
  const plan: ChannelPlan = { producer, width: producer.outFeatures, consumers: [], depthwise: [], vectors: [], reshapes: [], values: new Set() };
  const t: Tracer = { model, index, layerOf: new Map(layers.map((l) => [l.node, l])), plan, layouts: new Map() };
  try {
    if (producer.kind === 'gemm' && producer.bias && model.tensor(producer.bias).dims.length === 2 && model.tensor(producer.bias).dims[0] !== 1) refuse('its bias is not one vector');
    const reachable = downstream(index, producer.output);
    const done = new Set<NodeProto>([producer.node]);
    const waiting = new Set<NodeProto>();
    const queue = [producer.output];
    t.layouts.set(producer.output, { fromEnd: 1, rank, offset: 0, total: producer.outFeatures });
    if (producer.kind === 'conv') t.layouts.get(producer.output)!.fromEnd = rank! - 1;
    while (queue.length > 0) {
      const value = queue.shift()!;
      plan.values.add(value);
      for (const node of index.consumers.get(value) ?? []) {
        if (node.op_type === '<graph output>') refuse(`its channels reach the graph output '${value}'`);
        if (done.has(node)) continue;
        // a Concat puts other layers' channels beside these: it waits only for inputs this trace can still reach
        const ready = dataInputs(node).every((i) => {
          const name = node.input![i];
          return !name || t.layouts.has(name) || isConstant(model, index, name) || (node.op_type === 'Concat' && !reachable.has(name));
        });
        if (!ready) {
          waiting.add(node);
          continue;
        }
        waiting.delete(node);
        done.add(node);
        for (const [out, layout] of step(t, node)) {
          t.layouts.set(out, layout);
          queue.push(out);
        }
      }
    }
    const joined = [...waiting][0];
    if (joined) refuse(`its channels meet another branch's at ${describe(joined)} (channels tied to another layer's)`);
    if (plan.consumers.length === 0) refuse('nothing reads its channels');
    return { plan };
  } catch (e) {
    if (e instanceof Refusal) return { refused: e.message };
    throw e;
  }
}

/** Every value computed from `start`, `start` included. */
function downstream(index: GraphIndex, start: string): Set<string> {
  const seen = new Set([start]);
  const queue = [start];
  while (queue.length > 0) {
    for (const node of index.consumers.get(queue.shift()!) ?? []) {
      for (const o of node.output ?? []) {
        if (o && !seen.has(o)) {
          seen.add(o);
          queue.push(o);
        }
      }
    }
  }
  return seen;
}

/** The layout of each traced input of `node` (they must agree), and what the node makes of them. */
function step(t: Tracer, node: NodeProto): [string, ChannelLayout][] {
  const { model, index } = t;
  const op = node.op_type ?? '';
  if ((node.domain ?? '') !== '' && node.domain !== 'ai.onnx') refuse(`its channels reach ${describe(node)} of domain ${node.domain}`);
  const ins = node.input ?? [];
  const traced = ins.map((name, i) => ({ name, i, layout: t.layouts.get(name) })).filter((x) => x.layout && dataInputs(node).includes(x.i));
  for (const x of ins.entries()) if (x[1] && t.layouts.has(x[1]) && !dataInputs(node).includes(x[0]) && op !== 'Shape') refuse(`its channels are read as a parameter of ${describe(node)}`);
  if (traced.length === 0) return [];
  const layout = traced[0]!.layout!;
  for (const x of traced) if (!sameLayout(x.layout!, layout)) refuse(`${describe(node)} reads its channels in two layouts`);
  const out = node.output?.[0] ?? '';
  const onlyFirst = (): [string, ChannelLayout][] => {
    const extra = (node.output ?? []).slice(1).filter((o) => o && index.consumerCount(o) > 0);
    if (extra.length) refuse(`${describe(node)}'s output '${extra[0]}' is read`);
    return [[out, layout]];
  };
  const nchw = () => {
    if (layout.flat || layout.rank === undefined || layout.fromEnd !== layout.rank - 1) refuse(`${describe(node)} needs the channels on axis 1`);
  };
  const axis = (a: number) => {
    if (layout.rank === undefined && a >= 0) refuse(`${describe(node)} names axis ${a} of a value of unknown rank`);
    return a < 0 ? -a : layout.rank! - a; // as counted from the end
  };

  if (op === 'Shape' || op === 'Size') return []; // reads dims only; a dim read at run time follows the new width
  if (ELEMENTWISE.has(op) && !BROADCAST.has(op)) {
    if (op === 'Clip') for (const i of [1, 2]) if (ins[i] && !isConstant(model, index, ins[i]!)) refuse(`${describe(node)} has a computed bound`);
    return onlyFirst();
  }
  if (BROADCAST.has(op)) {
    let rank = layout.rank;
    for (const [i, name] of ins.entries()) {
      if (!name || t.layouts.has(name)) continue;
      const c = constantTensor(model, index, name)!;
      rank = rank === undefined ? undefined : Math.max(rank, c.dims.length);
      if (c.dims.length < layout.fromEnd) continue;
      const at = c.dims.length - layout.fromEnd;
      const d = c.dims[at]!;
      if (d === 1) continue;
      if (layout.flat) refuse(`${describe(node)} applies a per-feature constant after the channels were flattened`);
      if (d !== layout.total) refuse(`${describe(node)}'s constant '${name}' has ${d} entries along ${layout.total} channels`);
      t.plan.vectors.push({ node, input: i, tensor: name, axis: at, offset: layout.offset, total: layout.total });
    }
    return [[out, { ...layout, rank }]];
  }
  if (NORM_PARAMS[op]) {
    nchw();
    for (const i of NORM_PARAMS[op]!) {
      if (!ins[i]) continue;
      if (!isConstant(model, index, ins[i]!)) refuse(`${describe(node)} has a computed parameter`);
      t.plan.vectors.push({ node, input: i, tensor: ins[i]!, axis: 0, offset: layout.offset, total: layout.total });
    }
    return onlyFirst();
  }
  if (SPATIAL.has(op)) {
    nchw();
    if (op === 'Pad') {
      const pads = intsOf(model, index, node, 'pads', 1);
      if (!pads) refuse(`${describe(node)} has computed pads`);
      if (pads[1] !== 0 || pads[pads.length / 2 + 1] !== 0) refuse(`${describe(node)} pads the channel axis`);
    }
    if (op === 'Resize' || op === 'Upsample') {
      if (op === 'Resize' && ins[3]) refuse(`${describe(node)} resizes to given sizes`);
      const scales = op === 'Upsample' && node.attribute?.some((a) => a.name === 'scales') ? node.attribute.find((a) => a.name === 'scales')!.floats : constantTensor(model, index, ins[op === 'Resize' ? 2 : 1] ?? '')?.data;
      if (!scales) refuse(`${describe(node)} has computed scales`);
      const s = scales instanceof Uint8Array ? new Float32Array(scales.slice().buffer) : (scales as number[]);
      if (s[1] !== 1) refuse(`${describe(node)} scales the channel axis`);
    }
    return onlyFirst();
  }
  if (REDUCE.has(op)) {
    const axes = intsOf(model, index, node, 'axes', 1);
    if (!axes || axes.length === 0) refuse(`${describe(node)} reduces over every axis`);
    const fromEnd = axes.map(axis);
    if (fromEnd.includes(layout.fromEnd)) refuse(`${describe(node)} reduces over the channels`);
    if (attrInt(node, 'keepdims', 1) === 1) return [[out, layout]];
    return [[out, { ...layout, rank: layout.rank! - axes.length, fromEnd: layout.fromEnd - fromEnd.filter((a) => a < layout.fromEnd).length }]];
  }
  if (op === 'Softmax' || op === 'LogSoftmax' || op === 'Hardmax') {
    const a = axis(attrInt(node, 'axis', model.opset() >= 13 ? -1 : 1));
    // before opset 13 the input is flattened to 2-D from `axis` on, so every later axis is normalised too
    if (a === layout.fromEnd || (model.opset() < 13 && layout.fromEnd <= a) || layout.flat) refuse(`${describe(node)} normalises over the channels`);
    return onlyFirst();
  }
  if (op === 'Transpose') {
    if (layout.flat) return onlyFirst();
    const perm = attrInts(node, 'perm');
    const rank = perm?.length ?? layout.rank;
    if (rank === undefined) refuse(`${describe(node)} reverses a value of unknown rank`);
    const p = perm ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
    const from = rank - layout.fromEnd;
    return [[out, { ...layout, rank, fromEnd: rank - p.indexOf(from) }]];
  }
  if (op === 'Squeeze' || op === 'Unsqueeze') {
    const axes = intsOf(model, index, node, 'axes', 1);
    if (!axes || layout.rank === undefined) refuse(`${describe(node)} needs constant axes on a value of known rank`);
    const rank = op === 'Squeeze' ? layout.rank - axes.length : layout.rank + axes.length;
    const from = layout.rank - layout.fromEnd; // the channel axis, counted from the start
    let at = from;
    if (op === 'Squeeze') {
      const norm = axes.map((a) => (a < 0 ? a + layout.rank! : a));
      if (norm.includes(from)) refuse(`${describe(node)} squeezes the channel axis`);
      at = from - norm.filter((a) => a < from).length;
    } else {
      const norm = axes.map((a) => (a < 0 ? a + rank : a)).sort((a, b) => a - b);
      for (const a of norm) if (a <= at) at++;
    }
    return [[out, { ...layout, rank, fromEnd: rank - at }]];
  }
  if (op === 'Flatten') {
    if (layout.flat || layout.rank === undefined) refuse(`${describe(node)} flattens a value of unknown layout`);
    const k = attrInt(node, 'axis', 1);
    return [[out, merged(node, layout, k < 0 ? k + layout.rank : k, layout.rank)]];
  }
  if (op === 'Reshape') return [[out, reshaped(t, node, layout)]];
  if (op === 'Concat') {
    const a = axis(attrInt(node, 'axis', 0));
    if (a !== layout.fromEnd || layout.flat) refuse(`${describe(node)} joins along another axis than the channels`);
    let before = 0;
    let total = 0;
    for (const name of ins) {
      const n = channelCount(t, name, a);
      if (n === undefined) refuse(`${describe(node)} joins values whose channel counts are unknown`);
      if (name === traced[0]!.name) before = total;
      total += n;
    }
    if (traced.length > 1) refuse(`${describe(node)} joins the channels with themselves`);
    return [[out, { ...layout, offset: before + layout.offset, total }]];
  }
  if (op === 'Split') {
    const a = axis(attrInt(node, 'axis', 0));
    if (a === layout.fromEnd || layout.flat) refuse(`${describe(node)} splits the channels`);
    return (node.output ?? []).filter(Boolean).map((o) => [o, layout]);
  }
  if (op === 'Slice') {
    const axes = intsOf(model, index, node, 'axes', 3);
    if (!axes) refuse(`${describe(node)} slices every axis`);
    if (axes.map(axis).includes(layout.fromEnd) || layout.flat) refuse(`${describe(node)} slices the channels`);
    return onlyFirst();
  }
  if (op === 'Conv' || op === 'Gemm' || op === 'MatMul') return consumer(t, node, layout);
  return refuse(`its channels reach ${describe(node)}, which pare cannot narrow`);
}

function sameLayout(a: ChannelLayout, b: ChannelLayout): boolean {
  return a.fromEnd === b.fromEnd && a.offset === b.offset && a.total === b.total && a.flat === b.flat;
}

/** The layout after axes [k, rank) are merged into one (Flatten at k, or a 2-D Reshape). */
function merged(node: NodeProto, layout: ChannelLayout, k: number, rank: number): ChannelLayout {
  const at = rank - layout.fromEnd;
  if (at < k) refuse(`${describe(node)} merges the channels into the batch axis`);
  const count = rank - k;
  const flat = count === 1 ? undefined : at === k ? 'major' : at === rank - 1 ? 'minor' : refuse(`${describe(node)} merges the channels with axes on both sides`);
  return { ...layout, rank: k + 1, fromEnd: 1, flat };
}

/**
 * Reshapes the channels survive: a 2-D target that flattens everything after the batch axis
 * (`[N, -1]`, `[1, 256]`), or a target that copies every axis up to the channel axis (`[0, 0, -1]`)
 * and may reshape the axes after it.
 */
function reshaped(t: Tracer, node: NodeProto, layout: ChannelLayout): ChannelLayout {
  const target = shapeElements(t.model, t.index, node.input![1]!, node, 1);
  if (!target || layout.flat || layout.rank === undefined) refuse(`${describe(node)} has a target shape pare cannot read`);
  const at = layout.rank - layout.fromEnd;
  const sized = (e: (typeof target)[number]) => e.kind === 'const' && e.value !== 0 && e.value !== -1;
  if (target.length === 2 && at >= 1) {
    const result = merged(node, layout, 1, layout.rank);
    const e = target[1]!;
    if (e.kind === 'const' && sized(e)) {
      if (!e.source) refuse(`${describe(node)} has a target shape pare cannot change`);
      t.plan.reshapes.push({ source: e.source, value: e.value, total: layout.total });
    } else if (e.kind !== 'const' && !(e.kind === 'dim' && e.axis === 1)) {
      if (e.kind === 'unknown') refuse(`${describe(node)} has a target shape pare cannot read`);
    }
    return result;
  }
  const copies = target.slice(0, at + 1).every((e, i) => (e.kind === 'const' && e.value === 0) || (e.kind === 'dim' && e.axis === i && e.factor === 1 && e.tensor === node.input![0]));
  if (!copies) refuse(`${describe(node)} reshapes the channel axis`);
  return { ...layout, rank: target.length, fromEnd: target.length - at };
}

/** Channels of `value` on the axis `fromEnd` from the end, traced back to the layers that make them. */
function channelCount(t: Tracer, value: string, fromEnd: number): number | undefined {
  const traced = t.layouts.get(value);
  if (traced) return traced.total;
  const p = t.index.producer.get(value);
  if (!p) return undefined;
  const layer = t.layerOf.get(p);
  if (layer) {
    const rank = layer.kind === 'conv' ? layer.weightShape.length : undefined;
    const axisFromEnd = layer.kind === 'conv' ? rank! - 1 : 1;
    return fromEnd === axisFromEnd ? layer.outFeatures : undefined;
  }
  const op = p.op_type ?? '';
  if ((ELEMENTWISE.has(op) && !BROADCAST.has(op)) || SPATIAL.has(op) || NORM_PARAMS[op]) return channelCount(t, p.input![0]!, fromEnd);
  if (op === 'Concat') {
    let sum = 0;
    for (const i of p.input ?? []) {
      const n = channelCount(t, i, fromEnd);
      if (n === undefined) return undefined;
      sum += n;
    }
    return sum;
  }
  return undefined;
}

function consumer(t: Tracer, node: NodeProto, layout: ChannelLayout): [string, ChannelLayout][] {
  const layer = t.layerOf.get(node);
  if (!layer || node.input![0] !== t.plan.values.values().next().value && !t.layouts.has(node.input![0]!)) refuse(`its channels reach ${describe(node)} as a weight`);
  if (!layer) refuse(`its channels reach ${describe(node)}, whose weight is not a constant`);
  if (layer.kind === 'conv') {
    if (layout.flat || layout.rank === undefined || layout.fromEnd !== layout.rank - 1) refuse(`${describe(node)} reads them on another axis than its input channels`);
    const group = layer.group ?? 1;
    const perGroup = layer.weightShape[1]!;
    if (group === 1) {
      if (perGroup !== layout.total) refuse(`${describe(node)} has ${perGroup} input channels, ${layout.total} reach it`);
      t.plan.consumers.push({ layer, layout });
      return [];
    }
    if (perGroup === 1 && group === layout.total && layer.outFeatures === group) {
      t.plan.depthwise.push({ layer, layout });
      return [[layer.output, layout]];
    }
    return refuse(`${describe(node)} is a grouped Conv (group ${group})`);
  }
  if (layout.fromEnd !== 1) refuse(`${describe(node)} reads another axis than the channels as its features`);
  const F = layer.inFeatures;
  if (!layout.flat ? F !== layout.total : F % layout.total !== 0) refuse(`${describe(node)} has ${F} input features, not a whole number per channel of ${layout.total}`);
  t.plan.consumers.push({ layer, layout });
  return [];
}

/** The columns of `layer`'s [out, in] weight that read channel `c` (0-based within the producer) through `layout`. */
export function consumerColumns(layer: LinearLayer, layout: ChannelLayout, c: number): number[] {
  const ch = layout.offset + c;
  if (layer.kind === 'conv') {
    const spatial = layer.inFeatures / layer.weightShape[1]!;
    return Array.from({ length: spatial }, (_, i) => ch * spatial + i);
  }
  if (!layout.flat) return [ch];
  const per = layer.inFeatures / layout.total;
  if (layout.flat === 'major') return Array.from({ length: per }, (_, i) => ch * per + i);
  return Array.from({ length: per }, (_, o) => o * layout.total + ch);
}
