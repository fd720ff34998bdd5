import { attrInt } from '../model/graph.js';
import type { NodeProto } from '../model/onnx-schema.js';
import { axisFromEnd, constantTensor, describe, intsOf, isConstant, onlyFirst, refuse, type ChannelLayout, type Outputs, type Tracer, type Visit } from './channel-layout.js';
import { flatten, reshaped, squeeze, transpose } from './channel-axis-rules.js';

/** What each op does to the channels of a trace (channel-flow.ts): the layout of its output, or a refusal naming it. */

const ELEMENTWISE = new Set(['Relu', 'LeakyRelu', 'PRelu', 'Elu', 'Selu', 'Celu', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Tanh', 'Softplus', 'Softsign', 'Erf', 'Gelu', 'Mish', 'ThresholdedRelu', 'Clip', 'Dropout', 'Identity', 'Cast', 'Neg', 'Abs', 'Exp', 'Sqrt', 'Reciprocal', 'Floor', 'Ceil', 'Round']);
/** ops of two or more inputs broadcast against each other */
const BROADCAST = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mean', 'PRelu']);
/** ops over the spatial axes of an [N, C, ...] tensor, channel by channel */
const SPATIAL = new Set(['MaxPool', 'AveragePool', 'LpPool', 'GlobalAveragePool', 'GlobalMaxPool', 'GlobalLpPool', 'Pad', 'Resize', 'Upsample']);
/** per-channel [C] parameters of [N, C, ...] normalisations, by input index */
const NORM_PARAMS: Record<string, number[]> = { BatchNormalization: [1, 2, 3, 4], InstanceNormalization: [1, 2] };
const REDUCE = new Set(['ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceSum', 'ReduceL1', 'ReduceL2', 'ReduceSumSquare', 'ReduceLogSumExp', 'ReduceProd']);

/** Inputs of `node` that carry data the channels may flow through (the others are shapes, axes, scales). */
export function dataInputs(node: NodeProto): number[] {
  const op = node.op_type ?? '';
  if (BROADCAST.has(op) || op === 'Concat') return (node.input ?? []).map((_, i) => i);
  return [0];
}

/** The layout of each traced input of `node` (they must agree), and what the node makes of them. */
export function step(t: Tracer, node: NodeProto): Outputs {
  const op = node.op_type ?? '';
  if ((node.domain ?? '') !== '' && node.domain !== 'ai.onnx') refuse(`its channels reach ${describe(node)} of domain ${node.domain}`);
  const ins = node.input ?? [];
  const traced = ins.flatMap((name, i) => {
    const layout = t.layouts.get(name);
    return layout && dataInputs(node).includes(i) ? [{ name, i, layout }] : [];
  });
  for (const x of ins.entries()) if (x[1] && t.layouts.has(x[1]) && !dataInputs(node).includes(x[0]) && op !== 'Shape') refuse(`its channels are read as a parameter of ${describe(node)}`);
  if (traced.length === 0) return [];
  const layout = traced[0]!.layout;
  for (const x of traced) if (!sameLayout(x.layout, layout)) refuse(`${describe(node)} reads its channels in two layouts`);
  const v: Visit = { t, node, op, ins, traced, layout, out: node.output?.[0] ?? '' };

  if (op === 'Shape' || op === 'Size') return []; // reads dims only; a dim read at run time follows the new width
  if (ELEMENTWISE.has(op) && !BROADCAST.has(op)) return elementwise(v);
  if (BROADCAST.has(op)) return broadcast(v);
  if (NORM_PARAMS[op]) return normalisation(v);
  if (SPATIAL.has(op)) return spatial(v);
  if (REDUCE.has(op)) return reduce(v);
  if (op === 'Softmax' || op === 'LogSoftmax' || op === 'Hardmax') return softmax(v);
  if (op === 'Transpose') return transpose(v);
  if (op === 'Squeeze' || op === 'Unsqueeze') return squeeze(v);
  if (op === 'Flatten') return flatten(v);
  if (op === 'Reshape') return [[v.out, reshaped(t, node, layout)]];
  if (op === 'Concat') return concat(v);
  if (op === 'Split') return split(v);
  if (op === 'Slice') return slice(v);
  if (op === 'Conv' || op === 'Gemm' || op === 'MatMul') return consumer(t, node, layout);
  return refuse(`its channels reach ${describe(node)}, which pare cannot narrow`);
}

function needsChannelsOnAxis1(v: Visit): void {
  const { layout } = v;
  if (layout.flat || layout.rank === undefined || layout.fromEnd !== layout.rank - 1) refuse(`${describe(v.node)} needs the channels on axis 1`);
}

function elementwise(v: Visit): Outputs {
  const { t, node, ins } = v;
  if (v.op === 'Clip') for (const i of [1, 2]) if (ins[i] && !isConstant(t.model, t.index, ins[i]!)) refuse(`${describe(node)} has a computed bound`);
  return onlyFirst(v);
}

function broadcast(v: Visit): Outputs {
  const { t, node, ins, layout } = v;
  let rank = layout.rank;
  for (const [i, name] of ins.entries()) {
    if (!name || t.layouts.has(name)) continue;
    const c = constantTensor(t.model, t.index, name)!;
    rank = rank === undefined ? undefined : Math.max(rank, c.dims.length);
    if (c.dims.length < layout.fromEnd) continue;
    const at = c.dims.length - layout.fromEnd;
    const d = c.dims[at]!;
    if (d === 1) continue;
    if (layout.flat) refuse(`${describe(node)} applies a per-feature constant after the channels were flattened`);
    if (d !== layout.total) refuse(`${describe(node)}'s constant '${name}' has ${d} entries along ${layout.total} channels`);
    t.plan.vectors.push({ node, input: i, tensor: name, axis: at, offset: layout.offset, total: layout.total });
  }
  return [[v.out, { ...layout, rank }]];
}

function normalisation(v: Visit): Outputs {
  const { t, node, ins, layout } = v;
  needsChannelsOnAxis1(v);
  for (const i of NORM_PARAMS[v.op]!) {
    if (!ins[i]) continue;
    if (!isConstant(t.model, t.index, ins[i]!)) refuse(`${describe(node)} has a computed parameter`);
    t.plan.vectors.push({ node, input: i, tensor: ins[i]!, axis: 0, offset: layout.offset, total: layout.total });
  }
  return onlyFirst(v);
}

function spatial(v: Visit): Outputs {
  const { t, node, ins, op } = v;
  needsChannelsOnAxis1(v);
  if (op === 'Pad') {
    const pads = intsOf(t.model, t.index, node, 'pads', 1);
    if (!pads) refuse(`${describe(node)} has computed pads`);
    if (pads[1] !== 0 || pads[pads.length / 2 + 1] !== 0) refuse(`${describe(node)} pads the channel axis`);
  }
  if (op === 'Resize' || op === 'Upsample') {
    if (op === 'Resize' && ins[3]) refuse(`${describe(node)} resizes to given sizes`);
    const scales = op === 'Upsample' && node.attribute?.some((a) => a.name === 'scales') ? node.attribute.find((a) => a.name === 'scales')!.floats : constantTensor(t.model, t.index, ins[op === 'Resize' ? 2 : 1] ?? '')?.data;
    if (!scales) refuse(`${describe(node)} has computed scales`);
    const s = scales instanceof Uint8Array ? new Float32Array(scales.slice().buffer) : (scales as number[]);
    if (s[1] !== 1) refuse(`${describe(node)} scales the channel axis`);
  }
  return onlyFirst(v);
}

function reduce(v: Visit): Outputs {
  const { t, node, layout } = v;
  const axes = intsOf(t.model, t.index, node, 'axes', 1);
  if (!axes || axes.length === 0) refuse(`${describe(node)} reduces over every axis`);
  const fromEnd = axes.map((a) => axisFromEnd(v, a));
  if (fromEnd.includes(layout.fromEnd)) refuse(`${describe(node)} reduces over the channels`);
  if (attrInt(node, 'keepdims', 1) === 1) return [[v.out, layout]];
  return [[v.out, { ...layout, rank: layout.rank! - axes.length, fromEnd: layout.fromEnd - fromEnd.filter((a) => a < layout.fromEnd).length }]];
}

function softmax(v: Visit): Outputs {
  const { t, node, layout } = v;
  const opset = t.model.opset();
  const a = axisFromEnd(v, attrInt(node, 'axis', opset >= 13 ? -1 : 1));
  // before opset 13 the input is flattened to 2-D from `axis` on, so every later axis is normalised too
  if (a === layout.fromEnd || (opset < 13 && layout.fromEnd <= a) || layout.flat) refuse(`${describe(node)} normalises over the channels`);
  return onlyFirst(v);
}

function concat(v: Visit): Outputs {
  const { t, node, ins, layout, traced } = v;
  const a = axisFromEnd(v, attrInt(node, 'axis', 0));
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
  return [[v.out, { ...layout, offset: before + layout.offset, total }]];
}

function split(v: Visit): Outputs {
  const a = axisFromEnd(v, attrInt(v.node, 'axis', 0));
  if (a === v.layout.fromEnd || v.layout.flat) refuse(`${describe(v.node)} splits the channels`);
  return (v.node.output ?? []).filter(Boolean).map((o) => [o, v.layout]);
}

function slice(v: Visit): Outputs {
  const { t, node, layout } = v;
  const axes = intsOf(t.model, t.index, node, 'axes', 3);
  if (!axes) refuse(`${describe(node)} slices every axis`);
  if (axes.map((a) => axisFromEnd(v, a)).includes(layout.fromEnd) || layout.flat) refuse(`${describe(node)} slices the channels`);
  return onlyFirst(v);
}

function sameLayout(a: ChannelLayout, b: ChannelLayout): boolean {
  return a.fromEnd === b.fromEnd && a.offset === b.offset && a.total === b.total && a.flat === b.flat;
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
