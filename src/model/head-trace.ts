import { UserError } from '../errors.js';
import { attrInt, attrInts, type GraphIndex } from './graph.js';
import type { Model } from './model.js';
import { isKvCacheName } from './io.js';
import type { NodeProto } from './onnx-schema.js';
import { constantInts, shapeElements, type ConstantSource, type ShapeElement } from './shape-elements.js';

/** The head-axis trace of one attention block (attention-graph.ts): the layout of every head tensor and the op rules that move it. */

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

/** A constant vector added to a projection's output before its heads are split: it loses the rows its projection loses. */
export interface HeadBias {
  projection: { name: string; outFeatures: number };
  /** the initializer (possibly read through a Cast) */
  tensor: string;
}

export interface Layout {
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

/** The state of one attention block's trace: each head tensor's layout and what the splits told. */
export class HeadTrace {
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

export function kindOf(role: HeadRole): HeadKind {
  return role.startsWith('q') ? 'q' : 'kv';
}

function roleValue(role: HeadRole, dims: Partial<Record<HeadKind, number>>, headDim: number | undefined): number {
  const heads = dims[kindOf(role)] ?? NaN;
  return role.endsWith('·d') ? heads * (headDim ?? NaN) : heads;
}
