import { UserError } from '../errors.js';
import { attrInt, attrInts, GraphIndex } from '../model/graph.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { isKvCacheName } from '../model/io.js';
import type { NodeProto } from '../model/onnx-schema.js';
import { fusedParts, type FusedLinear } from './fused-split.js';
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
 * axis right after the group axis). A fused qkv_proj (Phi-3) is followed from the three outputs of
 * the Split that cuts it into q, k and v (fused-split.ts).
 */

export type HeadKind = 'q' | 'kv';
/** what a shape constant counts: query heads, KV groups, or either times head_dim */
export type HeadRole = 'q' | 'kv' | 'q·d' | 'kv·d';

export interface HeadShapeConstant {
  source: ConstantSource;
  role: HeadRole;
}

/** A KV-cache graph input (past) or output (present) that holds this attention's heads on `axis`. */
export interface HeadCacheValue {
  name: string;
  side: 'input' | 'output';
  kind: HeadKind;
  axis: number;
}

export interface Attention {
  /** `layers.0.self_attn` */
  name: string;
  /** q, k and v are one fused layer (qkv_proj): then q, k and v are that layer */
  fused?: FusedLinear;
  q: LinearLayer;
  k: LinearLayer;
  v: LinearLayer;
  o: LinearLayer;
  heads: number;
  groups: number;
  headDim: number;
  constants: HeadShapeConstant[];
  /** the KV cache this attention reads and writes (past inputs concatenated with this step's keys and values, and the present outputs) */
  cache: HeadCacheValue[];
  /** biases added to q, k or v projections' outputs (Qwen2), one value per output row */
  biases: HeadBias[];
}

/** A constant vector added to a projection's output before its heads are split: it loses the rows its projection loses. */
export interface HeadBias {
  projection: { name: string; outFeatures: number };
  /** the initializer (possibly read through a Cast) */
  tensor: string;
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
  /** the projection a merged tensor comes from (a part of a fused one: its name and rows) */
  proj?: { name: string; outFeatures: number };
}

const UNARY = new Set(['Neg', 'Sqrt', 'Cast', 'Identity', 'Relu', 'Tanh', 'Exp', 'Erf', 'Sigmoid']);
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Where']);
const PROJ = /^(.*)\.(q_proj|k_proj|v_proj|o_proj|qkv_proj)$/;

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
    if (![p.q_proj, p.k_proj, p.v_proj, p.o_proj, p.qkv_proj].some((l) => l && wanted.has(l.name))) continue;
    if (p.qkv_proj && p.o_proj && !p.q_proj && !p.k_proj && !p.v_proj) {
      const fused = fusedParts(model, index, p.qkv_proj, 3);
      if (!fused) throw new UserError(`prune.heads: the output of '${p.qkv_proj.name}' must be cut into q, k and v by one Split with constant sizes on the last axis`);
      found.push(traceAttention(model, index, name, { q: p.qkv_proj, k: p.qkv_proj, v: p.qkv_proj, o: p.o_proj }, fused));
      continue;
    }
    if (!p.q_proj || !p.k_proj || !p.v_proj || !p.o_proj) {
      throw new UserError(`prune.heads: '${name}' lacks one of q_proj, k_proj, v_proj, o_proj (or a fused qkv_proj with o_proj) as a linear layer`);
    }
    found.push(traceAttention(model, index, name, { q: p.q_proj, k: p.k_proj, v: p.v_proj, o: p.o_proj }));
  }
  return found;
}

function traceAttention(model: Model, index: GraphIndex, name: string, p: Record<'q' | 'k' | 'v' | 'o', LinearLayer>, fused?: FusedLinear): Attention {
  const { q, k, v, o } = p;
  // where q, k and v enter as merged [.., heads·d] values: the projections' outputs, or the parts of the fused one
  const seeds = fused
    ? (['q', 'kv', 'kv'] as const).map((kind, i) => ({ value: fused.outputs[i]!, kind, proj: { name: `${fused.layer.name}[${['q', 'k', 'v'][i]}]`, outFeatures: fused.widths[i]! } }))
    : [{ value: q.output, kind: 'q' as const, proj: q }, { value: k.output, kind: 'kv' as const, proj: k }, { value: v.output, kind: 'kv' as const, proj: v }];
  const t = new HeadTrace(model, index, name, seeds);
  for (const l of [q, k, v, o]) if (l.kind === 'conv') t.fail(l.node, 'a projection is a Conv');
  if (o.bias) t.fail(o.node, 'o_proj has a bias'); // it would need no change, but is untested here
  const ancestors = ancestorsOf(index, o.input, new Set(seeds.map((s) => s.value)));
  for (const node of model.graph.node ?? []) {
    if (node === o.node || node.op_type === 'Shape' || !(node.input ?? []).some((x) => t.layouts.has(x))) continue;
    if (!ancestors.has(node) && !t.cacheOutput(node)) t.fail(node, `a head tensor leaves the attention block (it feeds '${node.name}' outside the path to o_proj)`);
    const out = t.step(node);
    for (const x of node.output ?? []) if (x) t.layouts.set(x, out);
  }
  const { dims, headDim } = t;
  const end = t.layouts.get(o.input);
  if (!end || !end.merged || end.kind !== 'q') t.fail(o.node, 'o_proj does not read the merged query heads');
  if (dims.q === undefined || dims.kv === undefined || headDim === undefined) return t.fail(undefined, 'the head splits of q and k/v were not found');
  if (dims.q % dims.kv !== 0) t.fail(undefined, `${dims.q} query heads are not a multiple of ${dims.kv} KV heads`);
  if (o.inFeatures !== dims.q * headDim) t.fail(o.node, `o_proj reads ${o.inFeatures} features, not ${dims.q} heads × ${headDim}`);
  return { name, ...(fused ? { fused } : {}), q, k, v, o, heads: dims.q, groups: dims.kv, headDim, constants: t.constants, cache: t.cache, biases: t.biases };
}

/** The state of one attention block's trace: each head tensor's layout and what the splits told. */
class HeadTrace {
  readonly layouts = new Map<string, Layout>();
  readonly dims: Partial<Record<HeadKind, number>> = {};
  headDim: number | undefined;
  readonly constants: HeadShapeConstant[] = [];
  readonly cache: HeadCacheValue[] = [];
  readonly biases: HeadBias[] = [];
  private readonly graphInputs: Set<string>;
  private readonly graphOutputs: Set<string>;

  constructor(
    readonly model: Model,
    readonly index: GraphIndex,
    readonly name: string,
    seeds: { value: string; kind: HeadKind; proj: { name: string; outFeatures: number } }[],
  ) {
    for (const s of seeds) this.layouts.set(s.value, { head: -1, merged: true, kind: s.kind, proj: s.proj });
    this.graphInputs = new Set((model.graph.input ?? []).map((x) => x.name ?? ''));
    this.graphOutputs = new Set((model.graph.output ?? []).map((x) => x.name ?? ''));
  }

  fail(node: NodeProto | undefined, why: string): never {
    throw new UserError(`prune.heads: cannot follow the heads of '${this.name}'${node ? ` at ${node.op_type} node '${node.name}'` : ''}: ${why}`);
  }

  /** The layout of `node`'s outputs, or a UserError when the node does not keep heads apart. */
  step(node: NodeProto): Layout {
    const { model, index } = this;
    const ins = node.input ?? [];
    const data = ins.map((x) => this.layouts.get(x));
    const first = data.find((d) => d)!;
    const axisOf = (a: number, rank: number | undefined) => (a < 0 ? (rank === undefined ? this.fail(node, 'negative axis on a tensor of unknown rank') : a + rank) : a);
    const offHead = (axes: number[]) => {
      if (first.merged) this.fail(node, 'it works on the projection output before the heads are split');
      if (axes.some((a) => axisOf(a, first.rank) === first.head)) this.fail(node, 'it works along the head axis');
    };
    const target = () => {
      if (data[1]) this.fail(node, 'the target shape is computed from head data');
      return shapeElements(model, index, ins[1]!, node, 1) ?? this.fail(node, 'its target shape cannot be read');
    };
    switch (node.op_type) {
      case 'Reshape':
        return this.reshape(node, first, target());
      case 'Transpose': {
        if (first.merged) this.fail(node, 'it transposes the projection output before the heads are split');
        const perm = attrInts(node, 'perm') ?? Array.from({ length: first.rank! }, (_, i) => first.rank! - 1 - i);
        return { ...first, head: perm.indexOf(first.head), rep: first.rep === undefined ? undefined : perm.indexOf(first.rep) };
      }
      case 'Unsqueeze': {
        if (first.merged) this.fail(node, 'it reshapes the projection output before the heads are split');
        const axes = (ins[1] ? constantInts(model, index, ins[1])?.values : attrInts(node, 'axes')) ?? this.fail(node, 'axes are not constant');
        const rank = first.rank! + axes.length;
        const norm = axes.map((a) => (a < 0 ? a + rank : a)).sort((a, b) => a - b);
        let head = first.head;
        for (const a of norm) if (a <= head) head++;
        return { ...first, rank, head, rep: norm.includes(head + 1) ? head + 1 : undefined };
      }
      case 'Expand': {
        const shape = target();
        if (first.merged || shape.length !== first.rank) this.fail(node, 'an expand that changes rank');
        const e = shape[first.head]!;
        if (!(e.kind === 'const' && e.value === 1)) this.headElement(node, e, first.kind, first, first.head);
        shape.forEach((x, p) => p !== first.head && p !== first.rep && this.otherElement(node, x, first, p));
        return first;
      }
      case 'Slice': {
        if (data.slice(1).some((d) => d)) this.fail(node, 'slice bounds computed from head data');
        const starts = constantInts(model, index, ins[1]!);
        const axes = ins[3] ? constantInts(model, index, ins[3])?.values : starts?.values.map((_, i) => i);
        offHead(axes ?? this.fail(node, 'slice axes are not constant'));
        return first;
      }
      case 'Split':
      case 'Concat':
      case 'Softmax': {
        if (node.op_type === 'Concat') this.cacheConcat(node, data, first);
        if (node.op_type === 'Softmax' && model.opset() < 13 && first.rank !== undefined && axisOf(attrInt(node, 'axis', 1), first.rank) !== first.rank - 1) this.fail(node, 'opset < 13 softmax over more than the last axis');
        offHead([attrInt(node, 'axis', node.op_type === 'Softmax' ? -1 : 0)]);
        return first;
      }
      case 'ReduceMean':
      case 'ReduceSum':
      case 'ReduceMax': {
        // a per-head norm over head_dim (Qwen3's q_norm/k_norm): the head axis and the rank stay
        if (data.slice(1).some((d) => d)) this.fail(node, 'reduction axes computed from head data');
        const axes = ins[1] ? constantInts(model, index, ins[1])?.values : attrInts(node, 'axes');
        if (!axes?.length) this.fail(node, 'a reduction over every axis, or axes that are not constant');
        if (attrInt(node, 'keepdims', 1) !== 1) this.fail(node, 'a reduction that drops axes (keepdims 0)');
        offHead(axes!);
        return first;
      }
      case 'MatMul': {
        const [a, b] = data;
        if (!a || !b) return this.fail(node, 'a MatMul of head data with a weight');
        if (a.merged || b.merged || a.rank !== b.rank || a.head !== b.head || a.head >= a.rank! - 2) this.fail(node, 'the operands do not share a batch head axis');
        if (a.kind !== b.kind && this.dims.q !== this.dims.kv) this.fail(node, 'query heads meet KV groups without repeat_kv');
        return { ...a, rep: undefined };
      }
      default:
        if (UNARY.has(node.op_type ?? '')) return first;
        if (!BINARY.has(node.op_type ?? '')) this.fail(node, `unsupported op ${node.op_type} on head data`);
        return this.elementwise(node, data, first);
    }
  }

  /**
   * past ‖ this step along the sequence: a KV-cache graph input holds the same heads on the same
   * axis as the step's keys or values, and the concatenation may leave as a present output.
   */
  private cacheConcat(node: NodeProto, data: (Layout | undefined)[], first: Layout): void {
    const ins = node.input ?? [];
    ins.forEach((x, i) => {
      if (data[i]) return;
      if (!x || !this.graphInputs.has(x) || !isKvCacheName(x) || first.merged || first.rank !== 4) this.fail(node, 'it concatenates head data with other tensors');
      this.cache.push({ name: x, side: 'input', kind: first.kind, axis: first.head });
    });
    for (const out of node.output ?? []) if (out && this.graphOutputs.has(out)) this.cache.push({ name: out, side: 'output', kind: first.kind, axis: first.head });
  }

  /** An Identity that hands the concatenated cache to a present output: recorded, not a leak. */
  cacheOutput(node: NodeProto): boolean {
    const outs = node.output ?? [];
    const data = this.layouts.get(node.input?.[0] ?? '');
    if (node.op_type !== 'Identity' || !data || outs.length !== 1 || !this.graphOutputs.has(outs[0]!) || !isKvCacheName(outs[0]!)) return false;
    this.cache.push({ name: outs[0]!, side: 'output', kind: data.kind, axis: data.head });
    return true;
  }

  /** A head split, a repeat_kv merge or the final head merge; their head-count constants are recorded. */
  private reshape(node: NodeProto, inL: Layout, target: ShapeElement[]): Layout {
    if (inL.merged && inL.proj && target.length >= 2) {
      // head split [.., H·d] -> [.., H, d]
      const [h, d] = target.slice(-2);
      if (h?.kind !== 'const' || d?.kind !== 'const' || d.value <= 0) return this.fail(node, 'a head split must name heads and head_dim as constants');
      const proj = inL.proj;
      const count = h.value === -1 ? proj.outFeatures / d.value : h.value;
      if (this.headDim !== undefined && this.headDim !== d.value) this.fail(node, `head_dim ${d.value} differs from ${this.headDim} seen before`);
      if (count * d.value !== proj.outFeatures) this.fail(node, `${count} heads × ${d.value} does not match the ${proj.outFeatures} outputs of ${proj.name}`);
      if (this.dims[inL.kind] !== undefined && this.dims[inL.kind] !== count) this.fail(node, `${count} ${inL.kind} heads differ from ${this.dims[inL.kind]} seen before`);
      this.headDim = d.value;
      this.dims[inL.kind] = count;
      const rank = target.length;
      target.forEach((e, p) => (p === rank - 2 ? this.headElement(node, e, inL.kind, undefined, p) : p < rank - 2 && this.otherElement(node, e, undefined, p)));
      return { rank, head: rank - 2, merged: false, kind: inL.kind };
    }
    if (!inL.merged && inL.rep === inL.head + 1 && inL.kind === 'kv' && target.length === inL.rank! - 1) {
      // repeat_kv merge [b, G, r, s, d] -> [b, G·r, s, d]
      target.forEach((e, p) => (p === inL.head ? this.headElement(node, e, 'q', undefined, p) : p < inL.head && this.otherElement(node, e, inL, p)));
      return { rank: target.length, head: inL.head, merged: false, kind: 'q' };
    }
    if (!inL.merged && inL.rep === undefined && inL.head === inL.rank! - 2 && target.length === inL.rank! - 1) {
      // head merge [.., H, d] -> [.., H·d]
      const role: HeadRole = inL.kind === 'q' ? 'q·d' : 'kv·d';
      target.forEach((e, p) => (p === target.length - 1 ? this.headElement(node, e, role, undefined, p) : this.otherElement(node, e, inL, p)));
      return { head: -1, merged: true, kind: inL.kind, rank: target.length };
    }
    return this.fail(node, 'a reshape that is neither a head split, a repeat_kv merge nor a head merge');
  }

  /**
   * Binary ops: head operands must agree, and a constant operand must broadcast over the heads (no
   * per-head constants), except a projection's bias: a vector of its width added to its output.
   */
  private elementwise(node: NodeProto, data: (Layout | undefined)[], first: Layout): Layout {
    if (data.some((l) => l && (l.merged !== first.merged || l.head !== first.head || l.rank !== first.rank))) this.fail(node, 'operands with different head layouts');
    (node.input ?? []).forEach((x, i) => {
      if (data[i] || !x) return;
      const stored = this.castSource(x);
      const c = constantInts(this.model, this.index, stored)?.dims; // any constant's dims, whatever its type
      if (!c) return;
      if (node.op_type === 'Add' && first.merged && first.proj && c.length === 1 && c[0] === first.proj.outFeatures) {
        if (this.biases.some((b) => b.projection === first.proj)) this.fail(node, `a second bias on ${first.proj.name}`);
        this.biases.push({ projection: first.proj, tensor: stored });
        return;
      }
      const along = first.merged ? c.length - 1 : c.length - (first.rank! - first.head);
      if (along >= 0 && c[along]! > 1) this.fail(node, 'a constant operand with one value per head (or per head channel)');
    });
    return first;
  }

  /** The initializer behind a Cast (how builders read 16-bit checkpoint tensors as float32), or `name` itself. */
  private castSource(name: string): string {
    const p = this.index.producer.get(name);
    const from = p?.op_type === 'Cast' ? p.input?.[0] : undefined;
    return from && this.model.hasInitializer(from) ? from : name;
  }

  /** An element of a Reshape/Expand target at the head axis: it must change with the heads. */
  private headElement(node: NodeProto, e: ShapeElement, role: HeadRole, input: Layout | undefined, position: number): void {
    const { dims } = this;
    if (e.kind === 'const') {
      if (e.value === -1 || (e.value === 0 && input && !input.merged && input.head === position && input.kind === kindOf(role))) return;
      const old = roleValue(role, dims, this.headDim);
      if (e.value !== old) this.fail(node, `expected ${old} (${role}) at position ${position} of the target shape, found ${e.value}`);
      if (!e.source) this.fail(node, `the ${role} count ${e.value} is computed, not stored, so it cannot be changed`);
      this.constants.push({ source: e.source!, role });
    } else if (e.kind === 'dim') {
      const from = this.layouts.get(e.tensor);
      const ok = from && !from.merged && from.head === e.axis && ((from.kind === kindOf(role) && e.factor === 1) || (from.kind === 'kv' && kindOf(role) === 'q' && e.factor * dims.kv! === dims.q));
      if (!ok) this.fail(node, `position ${position} of the target shape is a dimension that does not follow the ${role} count`);
    } else this.fail(node, `position ${position} of the target shape cannot be read`);
  }

  /** Elsewhere a target element must not copy a head axis. */
  private otherElement(node: NodeProto, e: ShapeElement, input: Layout | undefined, position: number): void {
    const from = e.kind === 'dim' ? this.layouts.get(e.tensor) : undefined;
    const copiesHead = e.kind === 'dim' ? from !== undefined && !from.merged && from.head === e.axis : e.kind === 'const' && e.value === 0 && input !== undefined && !input.merged && input.head === position;
    if (copiesHead) this.fail(node, `position ${position} of the target shape copies the head axis to another axis`);
  }
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
