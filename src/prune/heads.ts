import { z } from 'zod';
import { UserError } from '../errors.js';
import { GraphIndex } from '../model/graph.js';
import { readWeight, removeUnused } from '../model/linear-weights.js';
import { linears, type LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { resizeLayer, takeCols, takeRows } from './reshape-weights.js';
import { definePass, type LayerStat } from '../pass/pass.js';
import { attentions, newRoleValue, type Attention } from '../model/attention-graph.js';
import { sliceVector } from './channel-removal.js';
import { fusedRows, resizeSplit } from '../model/fused-split.js';
import { applyConstantEdits } from '../model/shape-elements.js';

/**
 * Structured attention-head pruning: remove whole heads, the q rows of each, the matching input
 * columns of o_proj and, with grouped-query attention, a KV group's k/v rows together with all r
 * query heads that read it (the unit removed is a KV group; without GQA r = 1 and a group is one
 * head). Every Reshape constant that counts heads is rewritten (attention-graph.ts finds them), so
 * the smaller model runs in ONNX Runtime for any batch and sequence length.
 * Group importance: `weight` — ‖W_o[:, g]‖_F · (‖W_q[g, :]‖_F + ‖W_k[g, :]‖_F + ‖W_v[g, :]‖_F);
 * `activation` — Σ_c ‖X_c‖₂ · ‖W_o[:, c]‖₂ over the group's o_proj input channels c, X the o_proj
 * calibration inputs (the Wanda score summed over the group, as prune.channels does for channels).
 * A fused qkv_proj (Phi-3) loses the same q, k and v rows inside its one weight, and the Split after
 * it cuts the new widths, so it stays one layer with the checkpoint's name.
 */

const HeadParams = z.strictObject({
  sparsity: z.number().gt(0).lt(1).default(0.25).describe('fraction of KV groups (or heads, without GQA) removed in every targeted attention block, rounded; at least one is kept'),
  importance: z.enum(['weight', 'activation']).default('activation').describe('weight norms only, or calibration activation norms of o_proj inputs × o_proj column norms (needs calibration)'),
});

/** Frobenius norm of rows [r0, r1) of W [rows, cols]. */
function rowBlockNorm(W: Float32Array, cols: number, r0: number, r1: number): number {
  let s = 0;
  for (let i = r0 * cols; i < r1 * cols; i++) s += W[i]! * W[i]!;
  return Math.sqrt(s);
}

/** Squared norm of every column of W [rows, cols]. */
function colSquares(W: Float32Array, rows: number, cols: number): Float64Array {
  const n = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) n[c] += W[r * cols + c]! ** 2;
  return n;
}

/**
 * One score per KV group. Wq [G·r·d, in], Wk/Wv [G·d, in], Wo [out, G·r·d]; `sqnorm` is Σx² per
 * o_proj input channel (activation importance) or undefined (weight importance).
 */
export function headGroupScores(Wq: Float32Array, Wk: Float32Array, Wv: Float32Array, Wo: Float32Array, a: { groups: number; heads: number; headDim: number; hidden: number; out: number }, sqnorm?: Float64Array): Float64Array {
  const { groups, headDim: d, hidden } = a;
  const qPer = (a.heads / groups) * d; // o_proj columns (and q rows) of one group
  const oCols = colSquares(Wo, a.out, groups * qPer);
  const score = new Float64Array(groups);
  for (let g = 0; g < groups; g++) {
    if (sqnorm) {
      for (let c = g * qPer; c < (g + 1) * qPer; c++) score[g] += Math.sqrt(sqnorm[c]!) * Math.sqrt(oCols[c]!);
    } else {
      let o = 0;
      for (let c = g * qPer; c < (g + 1) * qPer; c++) o += oCols[c]!;
      const inputs = rowBlockNorm(Wq, hidden, g * qPer, (g + 1) * qPer) + rowBlockNorm(Wk, hidden, g * d, (g + 1) * d) + rowBlockNorm(Wv, hidden, g * d, (g + 1) * d);
      score[g] = Math.sqrt(o) * inputs;
    }
  }
  return score;
}

/** Rows (or columns) kept when keeping `groups`, each `per` wide. */
function spans(groups: number[], per: number): number[] {
  return groups.flatMap((g) => Array.from({ length: per }, (_, i) => g * per + i));
}

interface Weights {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  /** the fused q|k|v weight, whose row blocks q, k and v are */
  qkv?: Float32Array;
}

/** W_q, W_k, W_v and W_o [out, in]; a fused qkv_proj is read once and seen as its three row blocks. */
function readWeights(model: Model, a: Attention): Weights {
  const o = readWeight(model, a.o);
  if (!a.fused) return { q: readWeight(model, a.q), k: readWeight(model, a.k), v: readWeight(model, a.v), o };
  const qkv = readWeight(model, a.fused.layer);
  const inF = a.fused.layer.inFeatures;
  const [wq, wk] = a.fused.widths;
  return { q: qkv.subarray(0, wq! * inF), k: qkv.subarray(wq! * inF, (wq! + wk!) * inF), v: qkv.subarray((wq! + wk!) * inF), o, qkv };
}

/** Keep the KV groups `keep` (ascending) of one attention block: weights, biases, then shape constants. */
function keepGroups(model: Model, a: Attention, keep: number[], W: Weights, index: GraphIndex): void {
  const r = a.heads / a.groups;
  const qRows = spans(keep, r * a.headDim);
  const kvRows = spans(keep, a.headDim);
  applyConstantEdits(model, index, a.constants.map((c) => ({ source: c.source, value: newRoleValue(c.role, a, keep.length) })));
  const parts = a.fused
    ? [[a.fused.layer, W.qkv!, fusedRows(a.fused, [qRows, kvRows, kvRows])] as const]
    : ([[a.q, W.q, qRows], [a.k, W.k, kvRows], [a.v, W.v, kvRows]] as const);
  for (const [layer, Wl, rows] of parts) {
    resizeLayer(model, layer, takeRows(Wl, layer.inFeatures, rows), rows.length, layer.inFeatures);
    if (layer.bias) sliceVector(model, layer.bias, rows);
    for (const b of a.biases) if (b.projection === layer) sliceVector(model, b.tensor, rows);
  }
  if (a.fused) resizeSplit(model, index, a.fused, [qRows.length, kvRows.length, kvRows.length]);
  resizeLayer(model, a.o, takeCols(W.o, a.o.outFeatures, a.o.inFeatures, qRows), a.o.outFeatures, qRows.length);
  for (const c of a.cache) setDeclaredDim(model, c.name, c.side, c.axis, c.kind === 'kv' ? keep.length : keep.length * r);
}

/** The declared size of `axis` of a graph input or output (a KV cache's head axis). */
function setDeclaredDim(model: Model, name: string, side: 'input' | 'output', axis: number, size: number): void {
  const v = (side === 'input' ? model.graph.input : model.graph.output)?.find((x) => x.name === name);
  const dim = v?.type?.tensor_type?.shape?.dim?.[axis];
  if (dim) {
    delete dim.dim_param;
    dim.dim_value = size;
  }
}

export const heads = definePass({
  id: 'prune.heads',
  summary: 'structured pruning: whole attention heads (a KV group with all its query heads under GQA): q/k/v rows, o_proj columns and head-count shape constants, physically smaller',
  params: HeadParams,
  needsCalibration: (p) => (p?.importance === 'activation' ? { need: 'required', param: 'importance', instead: 'importance: weight' } : { need: 'none' }),
  changesLayers: true,
  async apply(model, params, ctx) {
    // match every targeted attention block before changing anything
    const found = attentions(model, linears(model), ctx.layers);
    if (found.length === 0) {
      throw new UserError(`prune.heads: ${ctx.where}.targets select no attention block (projections named like 'layers.0.self_attn.q_proj' or a fused 'layers.0.self_attn.qkv_proj')`);
    }
    // the recipe parser requires a calibration section for this (needsCalibration); direct callers must pass one
    if (params.importance === 'activation' && !ctx.calibration) throw new Error(`prune.heads: importance 'activation' needs ctx.calibration`);
    const stats = params.importance === 'activation' ? await ctx.calibration!.collect(model, found.map((a) => a.o), { sqnorm: true }) : undefined;
    const index = new GraphIndex(model.graph);
    const result: LayerStat[] = [];
    const warnings: string[] = [];
    for (const [j, a] of found.entries()) {
      ctx.progress.layer(j, found.length, a.name);
      const t0 = performance.now();
      const keepCount = Math.max(1, a.groups - Math.round(a.groups * params.sparsity));
      const r = a.heads / a.groups;
      if (keepCount === a.groups) {
        warnings.push(`'${a.name}' kept whole: removing ${params.sparsity} of ${a.groups} ${r > 1 ? 'KV groups' : 'heads'} rounds to none`);
        continue;
      }
      const W = readWeights(model, a);
      const score = headGroupScores(W.q, W.k, W.v, W.o, { groups: a.groups, heads: a.heads, headDim: a.headDim, hidden: a.q.inFeatures, out: a.o.outFeatures }, stats?.get(a.o.input)?.sqnorm);
      const keep = Array.from({ length: a.groups }, (_, g) => g)
        .sort((x, y) => score[y]! - score[x]! || x - y)
        .slice(0, keepCount)
        .sort((x, y) => x - y);
      const before = (W.q.length + W.k.length + W.v.length + W.o.length) * 4;
      keepGroups(model, a, keep, W, index);
      const after = (keepCount / a.groups) * before;
      result.push({
        name: a.name,
        kind: 'attention',
        shape: [a.groups, keepCount],
        ms: performance.now() - t0,
        bytes_before: before,
        bytes_after: after,
        extra: {
          heads_before: a.heads,
          heads_after: keepCount * r,
          kv_groups_before: a.groups,
          kv_groups_after: keepCount,
          removed_groups: Array.from({ length: a.groups }, (_, g) => g).filter((g) => !keep.includes(g)).join(','),
          ...(a.cache.length ? { kv_cache_resized: a.cache.map((c) => c.name).join(',') } : {}),
        },
      });
    }
    removeUnused(model);
    const resized = result.filter((l) => l.extra?.kv_cache_resized);
    const summary = resized.length
      ? { kv_cache: `past/present KV heads rewritten in ${resized.length} attention block${resized.length === 1 ? '' : 's'}: ${resized.map((l) => `${l.name} ${l.extra!.kv_groups_before} → ${l.extra!.kv_groups_after}`).join(', ')}` }
      : undefined;
    return { layers: result, warnings, ...(summary ? { summary } : {}) };
  },
});
