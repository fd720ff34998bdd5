import { attrInts, findAttribute, type GraphIndex } from '../model/graph.js';
import type { LinearLayer } from '../model/linears.js';
import type { HostTensor, Model } from '../model/model.js';
import type { NodeProto } from '../model/onnx-schema.js';
import { constantInts, type ConstantSource } from '../model/shape-elements.js';

/** The vocabulary of a channel trace (channel-flow.ts): layouts, the plan it builds, and how a trace is refused. */

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

export function describe(node: NodeProto): string {
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

export function isConstant(model: Model, index: GraphIndex, name: string): boolean {
  return model.hasInitializer(name) || index.producer.get(name)?.op_type === 'Constant';
}

/** An int list given as an attribute (older opsets) or a constant input (newer ones); undefined when neither. */
export function intsOf(model: Model, index: GraphIndex, node: NodeProto, attribute: string, input: number): number[] | undefined {
  const a = attrInts(node, attribute);
  if (a) return a;
  const name = node.input?.[input];
  return name ? constantInts(model, index, name)?.values : undefined;
}

export class Refusal extends Error {}

export function refuse(message: string): never {
  throw new Refusal(message);
}

export interface Tracer {
  model: Model;
  index: GraphIndex;
  layerOf: Map<NodeProto, LinearLayer>;
  plan: ChannelPlan;
  layouts: Map<string, ChannelLayout>;
}

/** One node reached by a trace: the layout its traced inputs share, and the checks several rules make. */
export interface Visit {
  t: Tracer;
  node: NodeProto;
  op: string;
  ins: string[];
  traced: { name: string; i: number; layout: ChannelLayout }[];
  layout: ChannelLayout;
  out: string;
}

export type Outputs = [string, ChannelLayout][];

/** The node's first output carries the channels unchanged; any other output must be unread. */
export function onlyFirst(v: Visit): Outputs {
  const extra = (v.node.output ?? []).slice(1).filter((o) => o && v.t.index.consumerCount(o) > 0);
  if (extra.length) refuse(`${describe(v.node)}'s output '${extra[0]}' is read`);
  return [[v.out, v.layout]];
}

/** An axis attribute of `v.node`, counted from the end. */
export function axisFromEnd(v: Visit, a: number): number {
  if (v.layout.rank === undefined && a >= 0) refuse(`${describe(v.node)} names axis ${a} of a value of unknown rank`);
  return a < 0 ? -a : v.layout.rank! - a;
}
