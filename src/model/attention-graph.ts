import { UserError } from '../errors.js';
import { GraphIndex } from './graph.js';
import type { LinearLayer } from './linears.js';
import type { Model } from './model.js';
import type { NodeProto } from './onnx-schema.js';
import { fusedParts, type FusedLinear } from './fused-split.js';
import { HeadTrace, type HeadBias, type HeadCacheValue, type HeadRole, type HeadShapeConstant } from './head-trace.js';

export type { HeadBias, HeadCacheValue, HeadKind, HeadRole, HeadShapeConstant } from './head-trace.js';

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
