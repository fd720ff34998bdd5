import { attrInt, attrInts } from '../model/graph.js';
import type { NodeProto } from '../model/onnx-schema.js';
import { describe, intsOf, onlyFirst, refuse, type ChannelLayout, type Outputs, type Tracer, type Visit } from './channel-layout.js';
import { shapeElements } from '../model/shape-elements.js';

/** Ops that move or merge the channel axis without touching the channels: Transpose, Squeeze/Unsqueeze, Flatten, Reshape. */

export function transpose(v: Visit): Outputs {
  const { node, layout } = v;
  if (layout.flat) return onlyFirst(v);
  const perm = attrInts(node, 'perm');
  const rank = perm?.length ?? layout.rank;
  if (rank === undefined) refuse(`${describe(node)} reverses a value of unknown rank`);
  const p = perm ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
  const from = rank - layout.fromEnd;
  return [[v.out, { ...layout, rank, fromEnd: rank - p.indexOf(from) }]];
}

export function squeeze(v: Visit): Outputs {
  const { t, node, layout } = v;
  const axes = intsOf(t.model, t.index, node, 'axes', 1);
  if (!axes || layout.rank === undefined) refuse(`${describe(node)} needs constant axes on a value of known rank`);
  const rank = v.op === 'Squeeze' ? layout.rank - axes.length : layout.rank + axes.length;
  const from = layout.rank - layout.fromEnd; // the channel axis, counted from the start
  let at = from;
  if (v.op === 'Squeeze') {
    const norm = axes.map((a) => (a < 0 ? a + layout.rank! : a));
    if (norm.includes(from)) refuse(`${describe(node)} squeezes the channel axis`);
    at = from - norm.filter((a) => a < from).length;
  } else {
    const norm = axes.map((a) => (a < 0 ? a + rank : a)).sort((a, b) => a - b);
    for (const a of norm) if (a <= at) at++;
  }
  return [[v.out, { ...layout, rank, fromEnd: rank - at }]];
}

export function flatten(v: Visit): Outputs {
  const { node, layout } = v;
  if (layout.flat || layout.rank === undefined) refuse(`${describe(node)} flattens a value of unknown layout`);
  const k = attrInt(node, 'axis', 1);
  return [[v.out, merged(node, layout, k < 0 ? k + layout.rank : k, layout.rank)]];
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
export function reshaped(t: Tracer, node: NodeProto, layout: ChannelLayout): ChannelLayout {
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
