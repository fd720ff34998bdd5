import { UserError } from '../errors.js';
import { attrInt, attrInts, GraphIndex } from '../model/graph.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import type { NodeProto } from '../model/onnx-schema.js';
import { constantInts, shapeElements, type ConstantSource, type ShapeElement } from './shape-elements.js';

/**
 * Finds the multi-head attention blocks of a graph and every shape constant that carries a head
 * count, by following the head axis from the q/k/v projections to the o projection's input.
 * Each data tensor on the way gets a layout: its rank, which axis holds heads, whether that axis
 * is still merged with head_dim ([.., H·d]), whether its heads are query heads or KV groups, and
 * the GQA repeat axis. Every op there must keep the head axis intact (transposes, RoPE slices and
 * concats on other axes, elementwise ops, batched MatMuls, softmax) and every Reshape/Expand must be
 * a head split, a repeat_kv merge or the final head merge; anything else is a UserError naming the
 * node, never a guess. Head h of the query belongs to KV group ⌊h / r⌋ (repeat_kv puts the repeat
 * axis right after the group axis).
 */

export type HeadKind = 'q' | 'kv';
/** what a shape constant counts: query heads, KV groups, or either times head_dim */
export type HeadRole = 'q' | 'kv' | 'q·d' | 'kv·d';

export interface HeadShapeConstant {
  source: ConstantSource;
  role: HeadRole;
}

export interface Attention {
  /** `layers.0.self_attn` */
  name: string;
  q: LinearLayer;
  k: LinearLayer;
  v: LinearLayer;
  o: LinearLayer;
  heads: number;
  groups: number;
  headDim: number;
  constants: HeadShapeConstant[];
}

interface Layout {
  /** undefined while merged and no reshape has told the rank */
  rank?: number;
  /** the head axis; the last axis while merged */
  head: number;
  merged: boolean;
  kind: HeadKind;
  /** the inserted axis that repeat_kv expands, when it sits right after the head axis */
  rep?: number;
  /** the projection a merged tensor comes from */
  proj?: LinearLayer;
}

const UNARY = new Set(['Neg', 'Sqrt', 'Cast', 'Identity', 'Relu', 'Tanh', 'Exp', 'Erf', 'Sigmoid']);
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Where']);
const PROJ = /^(.*)\.(q_proj|k_proj|v_proj|o_proj)$/;

/** The attention blocks whose projections `targets` selects, matched fully before anything changes. */
export function attentions(model: Model, all: LinearLayer[], targets: LinearLayer[]): Attention[] {
  const byKey = new Map<string, Partial<Record<string, LinearLayer>>>();
  for (const l of all) {
    const m = PROJ.exec(l.name);
    if (!m) continue;
    byKey.set(m[1]!, { ...byKey.get(m[1]!), [m[2]!]: l });
  }
  const wanted = new Set(targets.map((t) => t.name));
  const index = new GraphIndex(model.graph);
  const found: Attention[] = [];
  for (const [name, p] of byKey) {
    if (![p.q_proj, p.k_proj, p.v_proj, p.o_proj].some((l) => l && wanted.has(l.name))) continue;
    if (!p.q_proj || !p.k_proj || !p.v_proj || !p.o_proj) {
      throw new UserError(`prune.heads: '${name}' lacks one of q_proj, k_proj, v_proj, o_proj as a linear layer (fused qkv projections are not supported)`);
    }
    found.push(traceAttention(model, index, name, p.q_proj, p.k_proj, p.v_proj, p.o_proj));
  }
  return found;
}

function traceAttention(model: Model, index: GraphIndex, name: string, q: LinearLayer, k: LinearLayer, v: LinearLayer, o: LinearLayer): Attention {
  const fail = (node: NodeProto | undefined, why: string): never => {
    throw new UserError(`prune.heads: cannot follow the heads of '${name}'${node ? ` at ${node.op_type} node '${node.name}'` : ''}: ${why}`);
  };
  for (const l of [q, k, v, o]) {
    if (l.kind === 'conv') fail(l.node, 'a projection is a Conv');
    if (l.bias && l === o) fail(l.node, 'o_proj has a bias'); // would need no change, but Gemm biases here are untested
  }
  const layouts = new Map<string, Layout>([
    [q.output, { head: -1, merged: true, kind: 'q', proj: q }],
    [k.output, { head: -1, merged: true, kind: 'kv', proj: k }],
    [v.output, { head: -1, merged: true, kind: 'kv', proj: v }],
  ]);
  const dims: Partial<Record<HeadKind, number>> = {};
  let headDim: number | undefined;
  const constants: HeadShapeConstant[] = [];
  const ancestors = ancestorsOf(index, o.input, new Set([q.output, k.output, v.output]));

  // check one element of a Reshape/Expand target at the head axis: it must change with the heads
  const headElement = (node: NodeProto, e: ShapeElement, role: HeadRole, input: Layout | undefined, position: number): void => {
    const old = roleValue(role, dims, headDim);
    if (e.kind === 'const') {
      if (e.value === -1 || (e.value === 0 && input && !input.merged && input.head === position && input.kind === kindOf(role))) return;
      if (e.value !== old) fail(node, `expected ${old} (${role}) at position ${position} of the target shape, found ${e.value}`);
      if (!e.source) fail(node, `the ${role} count ${e.value} is computed, not stored, so it cannot be changed`);
      constants.push({ source: e.source!, role });
    } else if (e.kind === 'dim') {
      const from = layouts.get(e.tensor);
      const ok = from && !from.merged && from.head === e.axis && ((from.kind === kindOf(role) && e.factor === 1) || (from.kind === 'kv' && kindOf(role) === 'q' && e.factor * dims.kv! === dims.q));
      if (!ok) fail(node, `position ${position} of the target shape is a dimension that does not follow the ${role} count`);
    } else fail(node, `position ${position} of the target shape cannot be read`);
  };
  // elsewhere a target element must not copy a head axis
  const otherElement = (node: NodeProto, e: ShapeElement, input: Layout | undefined, position: number): void => {
    const copiesHead = e.kind === 'dim' ? layouts.get(e.tensor) !== undefined && !layouts.get(e.tensor)!.merged && layouts.get(e.tensor)!.head === e.axis : e.kind === 'const' && e.value === 0 && input !== undefined && !input.merged && input.head === position;
    if (copiesHead) fail(node, `position ${position} of the target shape copies the head axis to another axis`);
  };

  for (const node of model.graph.node ?? []) {
    const ins = node.input ?? [];
    const data = ins.map((x) => layouts.get(x));
    if (!data.some((d) => d)) continue;
    if (node === o.node) continue;
    if (node.op_type === 'Shape') continue;
    if (!ancestors.has(node)) fail(node, `a head tensor leaves the attention block (it feeds '${node.name}' outside the path to o_proj)`);
    const first = data.find((d) => d)!;
    const out = node.output ?? [];
    const set = (l: Layout) => out.forEach((x) => x && layouts.set(x, l));
    const axisOf = (a: number, rank: number | undefined) => (a < 0 ? (rank === undefined ? fail(node, 'negative axis on a tensor of unknown rank') : a + rank) : a);
    const offHead = (axes: number[], l: Layout) => {
      if (l.merged) fail(node, 'it works on the projection output before the heads are split');
      if (axes.some((a) => axisOf(a, l.rank) === l.head)) fail(node, 'it works along the head axis');
    };
    switch (node.op_type) {
      case 'Reshape': {
        if (data[1]) fail(node, 'the target shape is computed from head data');
        const target = shapeElements(model, index, ins[1]!, node, 1) ?? fail(node, 'its target shape cannot be read');
        const inL = first;
        if (inL.merged && inL.proj && target.length >= 2) {
          // head split [.., H·d] -> [.., H, d]
          const [h, d] = target.slice(-2);
          if (h?.kind !== 'const' || d?.kind !== 'const' || d.value <= 0) fail(node, 'a head split must name heads and head_dim as constants');
          const heads = (h as { value: number }).value === -1 ? undefined : (h as { value: number }).value;
          const hd = (d as { value: number }).value;
          const proj = inL.proj;
          const count = heads ?? proj.outFeatures / hd;
          if (headDim !== undefined && headDim !== hd) fail(node, `head_dim ${hd} differs from ${headDim} seen before`);
          if (count * hd !== proj.outFeatures) fail(node, `${count} heads × ${hd} does not match the ${proj.outFeatures} outputs of ${proj.name}`);
          if (dims[inL.kind] !== undefined && dims[inL.kind] !== count) fail(node, `${count} ${inL.kind} heads differ from ${dims[inL.kind]} seen before`);
          headDim = hd;
          dims[inL.kind] = count;
          const rank = target.length;
          target.forEach((e, p) => (p === rank - 2 ? headElement(node, e, inL.kind, undefined, p) : p === rank - 1 ? undefined : otherElement(node, e, undefined, p)));
          set({ rank, head: rank - 2, merged: false, kind: inL.kind });
        } else if (!inL.merged && inL.rep === inL.head + 1 && inL.kind === 'kv' && target.length === inL.rank! - 1) {
          // repeat_kv merge [b, G, r, s, d] -> [b, G·r, s, d]
          target.forEach((e, p) => (p === inL.head ? headElement(node, e, 'q', undefined, p) : p > inL.head ? undefined : otherElement(node, e, inL, p)));
          set({ rank: target.length, head: inL.head, merged: false, kind: 'q' });
        } else if (!inL.merged && inL.rep === undefined && inL.head === inL.rank! - 2 && target.length === inL.rank! - 1) {
          // head merge [.., H, d] -> [.., H·d]
          const role: HeadRole = inL.kind === 'q' ? 'q·d' : 'kv·d';
          target.forEach((e, p) => (p === target.length - 1 ? headElement(node, e, role, undefined, p) : otherElement(node, e, inL, p)));
          set({ head: -1, merged: true, kind: inL.kind, rank: target.length });
        } else fail(node, 'a reshape that is neither a head split, a repeat_kv merge nor a head merge');
        break;
      }
      case 'Transpose': {
        if (first.merged) fail(node, 'it transposes the projection output before the heads are split');
        const perm = attrInts(node, 'perm') ?? Array.from({ length: first.rank! }, (_, i) => first.rank! - 1 - i);
        set({ ...first, head: perm.indexOf(first.head), rep: first.rep === undefined ? undefined : perm.indexOf(first.rep) });
        break;
      }
      case 'Unsqueeze': {
        if (first.merged) fail(node, 'it reshapes the projection output before the heads are split');
        const axes = (ins[1] ? constantInts(model, index, ins[1])?.values : attrInts(node, 'axes')) ?? fail(node, 'axes are not constant');
        const rank = first.rank! + axes.length;
        const norm = axes.map((a) => (a < 0 ? a + rank : a)).sort((a, b) => a - b);
        let head = first.head;
        for (const a of norm) if (a <= head) head++;
        set({ ...first, rank, head, rep: norm.includes(head + 1) ? head + 1 : undefined });
        break;
      }
      case 'Expand': {
        if (data[1]) fail(node, 'the target shape is computed from head data');
        const target = shapeElements(model, index, ins[1]!, node, 1) ?? fail(node, 'its target shape cannot be read');
        if (first.merged || target.length !== first.rank) fail(node, 'an expand that changes rank');
        const e = target[first.head]!;
        if (!(e.kind === 'const' && e.value === 1)) headElement(node, e, first.kind, first, first.head);
        target.forEach((x, p) => p !== first.head && p !== first.rep && otherElement(node, x, first, p));
        set(first);
        break;
      }
      case 'Slice': {
        if (data.slice(1).some((d) => d)) fail(node, 'slice bounds computed from head data');
        const starts = constantInts(model, index, ins[1]!);
        const axes = ins[3] ? constantInts(model, index, ins[3])?.values : starts && starts.values.map((_, i) => i);
        if (!axes) fail(node, 'slice axes are not constant');
        offHead(axes!, first);
        set(first);
        break;
      }
      case 'Split':
      case 'Concat':
      case 'Softmax': {
        const fallback = node.op_type === 'Softmax' ? -1 : 0;
        if (node.op_type === 'Concat' && data.some((d) => !d)) fail(node, 'it concatenates head data with other tensors');
        if (node.op_type === 'Softmax' && model.opset() < 13 && first.rank !== undefined && axisOf(attrInt(node, 'axis', 1), first.rank) !== first.rank - 1) fail(node, 'opset < 13 softmax over more than the last axis');
        offHead([attrInt(node, 'axis', fallback)], first);
        set(first);
        break;
      }
      case 'MatMul': {
        const [a, b] = data;
        if (!a || !b) fail(node, 'a MatMul of head data with a weight');
        if (a!.merged || b!.merged || a!.rank !== b!.rank || a!.head !== b!.head || a!.head >= a!.rank! - 2) fail(node, 'the operands do not share a batch head axis');
        if (a!.kind !== b!.kind && dims.q !== dims.kv) fail(node, 'query heads meet KV groups without repeat_kv');
        set({ ...a!, rep: undefined });
        break;
      }
      default: {
        if (UNARY.has(node.op_type ?? '')) {
          set(first);
          break;
        }
        if (!BINARY.has(node.op_type ?? '')) fail(node, `unsupported op ${node.op_type} on head data`);
        const lays = data.filter((d) => d) as Layout[];
        if (lays.some((l) => l.merged !== first.merged || l.head !== first.head || l.rank !== first.rank)) fail(node, 'operands with different head layouts');
        // a constant operand must broadcast over the head axis (no per-head constants, no q/k/v biases)
        ins.forEach((x, i) => {
          if (data[i]) return;
          const c = model.hasInitializer(x) ? model.tensor(x).dims : index.producer.get(x)?.op_type === 'Constant' ? constantDims(model, index, x) : undefined;
          if (!c) return;
          const along = first.merged ? c.length - 1 : c.length - (first.rank! - first.head);
          if (along >= 0 && c[along]! > 1) fail(node, 'a constant operand with one value per head (or per head channel)');
        });
        set(first);
      }
    }
  }
  const end = layouts.get(o.input);
  if (!end || !end.merged || end.kind !== 'q') fail(o.node, 'o_proj does not read the merged query heads');
  if (dims.q === undefined || dims.kv === undefined || headDim === undefined) fail(undefined, 'the head splits of q and k/v were not found');
  if (dims.q! % dims.kv! !== 0) fail(undefined, `${dims.q} query heads are not a multiple of ${dims.kv} KV heads`);
  if (o.inFeatures !== dims.q! * headDim!) fail(o.node, `o_proj reads ${o.inFeatures} features, not ${dims.q} heads × ${headDim}`);
  return { name, q, k, v, o, heads: dims.q!, groups: dims.kv!, headDim: headDim!, constants };
}

function kindOf(role: HeadRole): HeadKind {
  return role.startsWith('q') ? 'q' : 'kv';
}

function roleValue(role: HeadRole, dims: Partial<Record<HeadKind, number>>, headDim: number | undefined): number {
  const heads = dims[kindOf(role)] ?? NaN;
  return role.endsWith('·d') ? heads * (headDim ?? NaN) : heads;
}

/** The value of a role once `groups` KV groups remain. */
export function newRoleValue(role: HeadRole, a: Attention, groups: number): number {
  const heads = role.startsWith('q') ? (groups * a.heads) / a.groups : groups;
  return role.endsWith('·d') ? heads * a.headDim : heads;
}

function constantDims(model: Model, index: GraphIndex, name: string): number[] | undefined {
  return constantInts(model, index, name)?.dims ?? (index.producer.get(name)?.op_type === 'Constant' ? [] : undefined);
}

/** Nodes that `value` depends on, not looking past `stops`. */
function ancestorsOf(index: GraphIndex, value: string, stops: Set<string>): Set<NodeProto> {
  const seen = new Set<NodeProto>();
  const todo = [value];
  while (todo.length) {
    const v = todo.pop()!;
    if (stops.has(v)) continue;
    const p = index.producer.get(v);
    if (!p || seen.has(p)) continue;
    seen.add(p);
    todo.push(...(p.input ?? []).filter((x) => x));
  }
  return seen;
}
