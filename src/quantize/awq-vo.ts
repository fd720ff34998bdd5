import { isExpectedError } from '../errors.js';
import { attrInt, attrInts, type GraphIndex } from '../model/graph.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { attentions } from '../model/attention-graph.js';
import { constantInts, shapeElements } from '../model/shape-elements.js';
import { foldInverse, type Fold } from './smoothquant.js';

/**
 * The v_proj → o_proj pair of AWQ (as in the paper's reference code): attention is linear in V per
 * head channel,
 *   o_in[t, h·d + e] = Σ_τ P_h[t, τ] · v[τ, g(h)·d + e],   g(h) = ⌊h / r⌋, r = heads / KV heads,
 * so o_proj's input j = h·d + e reads v channel c(j) = g(h)·d + e, and dividing v_proj's output row c
 * by s_c divides every o_proj input j with c(j) = c by s_c: o_proj's columns take s_c(j), and the
 * scales are searched per v channel (shared by the r query heads of a group). A KV cache then holds
 * v/s: the past values fed back come from the same scaled v_proj, so decoding stays exact.
 *
 * The head structure (which axis holds heads, repeat_kv's group axis, KV-cache concats) comes from
 * prune.heads' trace (model/attention-graph.ts); on top of it every op on V's way must keep head_dim as
 * the last axis and act on it as the identity: Reshape (head split, repeat_kv merge, head merge),
 * Transpose that leaves the last axis, Unsqueeze/Expand before it, Concat along another axis with
 * the past values, Identity, and MatMul(P, V) with V as the right operand. Anything else (an
 * activation, a norm, a slice of head_dim) is a refusal.
 *
 * Two more forms fold exactly: a bias added to v (Qwen2's v_proj.bias, or one added to a fused
 * layer's v part), v = x·Wvᵀ + b, divided with Wv's rows (b_c / s_c); and a fused qkv_proj (Phi-3),
 * whose v rows alone are divided (V's way then starts at the Split's v output). A bias another node
 * also reads, or a Gemm's own bias input, is a refusal.
 */

export interface VoFold {
  /** the layer whose output rows are v's channels: v_proj, or a fused qkv_proj from row `row0` on */
  v: LinearLayer;
  row0: number;
  /** the initializer of a bias added to v (one value per v channel), divided with the rows */
  bias?: string;
  o: LinearLayer;
  /** c(j): the v_proj output channel that o_proj input j reads */
  channelOf: Int32Array;
  heads: number;
  groups: number;
  headDim: number;
  /** graph outputs (the present values of a KV cache) that now hold v/s */
  cacheOutputs: string[];
}

/** How o_proj's inputs read v_proj's outputs, or why that is not provably per channel. */
export function voFold(model: Model, index: GraphIndex, all: LinearLayer[], o: LinearLayer): VoFold | { refused: string } {
  let found;
  try {
    found = attentions(model, all, [o]).find((a) => a.o.node === o.node);
  } catch (e) {
    if (isExpectedError(e)) return { refused: e.message.replace(/^prune\.heads: /, '') };
    throw e;
  }
  if (!found) return { refused: `'${o.name}' is not the o_proj of an attention block with q_proj, k_proj and v_proj` };
  const { v, heads, groups, headDim, fused } = found;
  // the v part of a fused layer: its rows after q's and k's, and the Split output that carries them
  const [row0, width, start, name] = fused ? [fused.widths[0]! + fused.widths[1]!, fused.widths[2]!, fused.outputs[2]!, `${v.name}[v]`] : [0, v.outFeatures, v.output, v.name];
  if (v.kind !== 'matmul' || v.bias) return { refused: `'${v.name}' is not a MatMul without bias` };
  if (width !== groups * headDim || o.inFeatures !== heads * headDim) return { refused: `'${name}' (${width} outputs) and '${o.name}' (${o.inFeatures} inputs) do not match ${groups} KV heads, ${heads} heads × ${headDim}` };
  const bias = found.biases.find((b) => b.projection.name === name)?.tensor;
  if (bias !== undefined && !soleVector(model, index, bias, width)) return { refused: `the bias '${bias}' added to '${name}' is not a vector of ${width} values read by that Add alone` };
  const path = valuePath(model, index, start, o, headDim, bias);
  if (typeof path === 'string') return { refused: path };
  const r = heads / groups;
  const channelOf = Int32Array.from({ length: o.inFeatures }, (_, j) => Math.floor(Math.floor(j / headDim) / r) * headDim + (j % headDim));
  return { v, row0, ...(bias !== undefined ? { bias } : {}), o, channelOf, heads, groups, headDim, cacheOutputs: path };
}

/** A 1-D initializer of `width` values that one node reads (directly, or through one Cast read once): dividing it changes nothing else. */
function soleVector(model: Model, index: GraphIndex, tensor: string, width: number): boolean {
  if (!model.hasInitializer(tensor) || index.consumerCount(tensor) !== 1) return false;
  const reader = index.consumers.get(tensor)![0]!;
  if (reader.op_type === 'Cast' && index.consumerCount(reader.output![0]!) !== 1) return false;
  const dims = model.tensor(tensor).dims;
  return dims.length === 1 && dims[0] === width;
}

/** The constant `name` stands for: the initializer itself, or the one a Cast reads. */
function constantSource(model: Model, index: GraphIndex, name: string): string {
  const p = index.producer.get(name);
  return p?.op_type === 'Cast' && p.input?.[0] && model.hasInitializer(p.input[0]) ? p.input[0] : name;
}

/** The graph outputs on V's way, or the refusal: every op from `start` to o_proj's input keeps head_dim last and untouched (the Add of `bias`, divided too, is the identity here). */
function valuePath(model: Model, index: GraphIndex, start: string, o: LinearLayer, headDim: number, bias?: string): string[] | string {
  const graphOutputs = new Set((model.graph.output ?? []).map((x) => x.name ?? ''));
  const rank = new Map<string, number | undefined>([[start, undefined]]);
  const outputs: string[] = [];
  const at = (n: { op_type?: string | null; name?: string | null }, why: string) => `V's way to o_proj is not linear per channel at ${n.op_type} node '${n.name}': ${why}`;
  for (const node of model.graph.node ?? []) {
    const ins = node.input ?? [];
    const onPath = ins.map((x) => rank.has(x));
    if (node === o.node || node.op_type === 'Shape' || !onPath.some((x) => x)) continue;
    const inRank = rank.get(ins[onPath.indexOf(true)]!);
    let outRank: number | undefined;
    const addsBias = node.op_type === 'Add' && bias !== undefined && ins.length === 2 && onPath.filter((x) => x).length === 1 && constantSource(model, index, ins[onPath[0] ? 1 : 0]!) === bias;
    if (node.op_type === 'Identity' || addsBias) outRank = inRank;
    else if (inRank === undefined && node.op_type !== 'Reshape') return at(node, 'it acts on the projection output before the heads are split');
    else if (node.op_type === 'Reshape' || node.op_type === 'Expand') {
      if (!onPath[0] || onPath[1]) return at(node, 'the shape is computed from V');
      const target = shapeElements(model, index, ins[1]!, node, 1);
      const last = target?.[target.length - 1];
      const merged = node.op_type === 'Reshape' && node.output?.[0] === o.input;
      // head_dim as a constant, or copied from the last axis of a tensor on V's way (PyTorch's Expand shapes)
      const copied = last?.kind === 'dim' && last.factor === 1 && rank.get(last.tensor) !== undefined && last.axis === rank.get(last.tensor)! - 1;
      const constant = last?.kind === 'const' && (merged ? [o.inFeatures, -1].includes(last.value) : [headDim, ...(node.op_type === 'Expand' ? [1] : [])].includes(last.value));
      const keeps = merged ? constant : constant || copied;
      if (!target || !keeps) return at(node, `its target's last element is not head_dim ${headDim}${merged ? ` (or the merged ${o.inFeatures})` : ''}`);
      outRank = target.length;
    } else if (node.op_type === 'Transpose') {
      const perm = attrInts(node, 'perm');
      if (!perm || perm[inRank! - 1] !== inRank! - 1) return at(node, 'it moves the head_dim axis');
      outRank = inRank;
    } else if (node.op_type === 'Unsqueeze') {
      const axes = (ins[1] ? constantInts(model, index, ins[1])?.values : attrInts(node, 'axes')) ?? [];
      outRank = inRank! + axes.length;
      if (!axes.length || axes.some((a) => (a < 0 ? a + outRank! : a) >= outRank! - 1)) return at(node, 'its axes are not constant, or one lands after head_dim');
    } else if (node.op_type === 'Concat') {
      // the other operands are the past values: the trace admits only KV-cache graph inputs there
      const axis = attrInt(node, 'axis', 0);
      if ((axis < 0 ? axis + inRank! : axis) === inRank! - 1) return at(node, 'it concatenates along head_dim');
      outRank = inRank;
    } else if (node.op_type === 'MatMul') {
      if (onPath[0] || !onPath[1]) return at(node, 'V is not only its right operand');
      outRank = inRank;
    } else return at(node, `${node.op_type} is not one of Reshape, Transpose, Unsqueeze, Expand, Concat, Identity, MatMul(P, V)`);
    for (const out of node.output ?? []) {
      if (!out) continue;
      rank.set(out, outRank);
      if (graphOutputs.has(out)) outputs.push(out);
    }
  }
  if (!rank.has(o.input)) return `'${o.name}' does not read V`;
  return outputs;
}

/** o_proj's scales s_j = s_c(j) from the per-v-channel scales, and v_proj's row factors 1/s_c. */
export function expandScales(fold: Pick<VoFold, 'channelOf'>, perChannel: Float64Array): { columns: Float64Array; rowsInverse: Float64Array } {
  return { columns: Float64Array.from(fold.channelOf, (c) => perChannel[c]!), rowsInverse: Float64Array.from(perChannel, (s) => 1 / s) };
}

/** Where the rows are divided (for the report): v_proj, or the v rows of the fused layer. */
export function voRows(fold: VoFold): Fold {
  return { kind: 'linear', layer: fold.v, row0: fold.row0 };
}

/** Divide v's channel c by s_c: its weight rows and, when v has one, its bias. */
export function foldVoInverse(model: Model, fold: VoFold, rowsInverse: Float64Array): void {
  foldInverse(model, voRows(fold), rowsInverse);
  if (fold.bias !== undefined) foldInverse(model, { kind: 'vector', name: fold.bias }, rowsInverse);
}
