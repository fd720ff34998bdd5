import { z } from 'zod';
import { UserError } from '../errors.js';
import { readWeight } from '../model/linear-weights.js';
import { linears, type LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { resizeLayer, takeCols, takeRows } from './reshape-weights.js';
import { definePass, type LayerStat } from '../pass/pass.js';
import { GraphIndex } from '../model/graph.js';
import { removeChannels, sliceVector } from './channel-removal.js';
import { traceChannels } from './channel-flow.js';
import { fusedParts, fusedRows, resizeSplit, type FusedLinear } from '../model/fused-split.js';

/**
 * Structured FFN pruning: remove intermediate channels of each MLP, the matching rows of the
 * up/gate projections and columns of the down projection together, so the written model is
 * physically smaller and runs as fast as its new width. Channel importance: `weight` —
 * ‖W_down[:, c]‖₂ · (‖W_up[c, :]‖₂ + ‖W_gate[c, :]‖₂); `activation` — ‖X_c‖₂ · ‖W_down[:, c]‖₂ with X the
 * down projection's calibration inputs (the Wanda score summed over the channel's outputs).
 * Every other selected layer (a Conv, a Gemm or MatMul of a CNN's or MLP's classifier head) loses
 * its lowest-norm output channels, found by graph structure (channel-flow.ts): the matching input
 * columns of every layer that reads them and the per-channel constants on the way go with them
 * (channel-removal.ts). A layer whose channels cannot be followed is kept whole, with a warning
 * naming the op; when no selected layer can be pruned, the pass is a user error naming them all. A fused gate_up_proj (Phi-3: rows gate then up,
 * cut by one Split) loses channel c's row in both halves inside its one weight, and the Split cuts
 * the new widths; its weight importance adds both halves' row norms, as for separate gate and up.
 */

const ChannelParams = z.strictObject({
  sparsity: z.number().gt(0).lt(1).default(0.3).describe('fraction of intermediate channels removed in every targeted MLP'),
  importance: z.enum(['weight', 'activation']).default('activation').describe('weight norms only, or calibration activation norms × weight norms (needs calibration)'),
  multiple_of: z.number().int().min(1).default(1).describe('keep a channel count that is a multiple of this (8 suits SIMD kernels)'),
});

interface Mlp {
  key: string;
  ins: LinearLayer[];
  down: LinearLayer;
  /** the one input projection is a fused gate_up_proj whose halves are the channels' gate and up rows */
  fused?: FusedLinear;
}

const IN_NAMES = /\.(gate_proj|up_proj|gate_up_proj|w1|w3|c_fc|fc1)$/;
const OUT_NAMES = /\.(down_proj|w2|c_proj|fc2)$/;

/** MLPs whose projections the targets select: the input projections and the down projection of each. */
function mlps(model: Model, targets: LinearLayer[]): Mlp[] {
  const all = linears(model);
  const index = new GraphIndex(model.graph);
  const out: Mlp[] = [];
  for (const down of all.filter((l) => OUT_NAMES.test(l.name) && /mlp|feed_forward|ffn/.test(l.name))) {
    const key = down.name.replace(OUT_NAMES, '');
    const ins = all.filter((l) => l.name.startsWith(`${key}.`) && IN_NAMES.test(l.name));
    if (ins.length === 0 || !targets.some((t) => t === down || ins.some((i) => i.name === t.name) || t.name === down.name)) continue;
    const fused = ins.length === 1 && ins[0]!.outFeatures === 2 * down.inFeatures ? fusedParts(model, index, ins[0]!, 2) : undefined;
    if (fused) {
      if (fused.widths.every((w) => w === down.inFeatures)) out.push({ key, ins, down, fused });
      continue;
    }
    if (ins.some((l) => l.outFeatures !== down.inFeatures)) continue;
    out.push({ key, ins, down });
  }
  return out;
}

function rowNorms(W: Float32Array, rows: number, cols: number): Float64Array {
  const n = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += W[r * cols + c]! ** 2;
    n[r] = Math.sqrt(s);
  }
  return n;
}

function colNorms(W: Float32Array, rows: number, cols: number): Float64Array {
  const n = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) n[c] += W[r * cols + c]! ** 2;
  return n.map(Math.sqrt);
}

export const channels = definePass({
  id: 'prune.channels',
  summary: 'structured pruning: FFN intermediate channels (up/gate rows with down columns) and conv output channels (with consumers\' inputs), physically smaller',
  params: ChannelParams,
  needsCalibration: (p) => (p?.importance === 'activation' ? { need: 'required', param: 'importance', instead: 'importance: weight' } : { need: 'none' }),
  changesLayers: true,
  // an estimate: each selected layer loses `sparsity` of its rows or of its input columns (a conv between two pruned ones loses both, a layer kept whole none)
  estimateBytes: (_layer, params, bytesBefore) => Math.round(bytesBefore * (1 - params.sparsity)),
  async apply(model, params, ctx) {
    const found = mlps(model, ctx.layers);
    // every other selected layer is a producer whose output channels are traced through the graph
    const inMlps = new Set(found.flatMap((m) => [m.down, ...m.ins].map((l) => l.name)));
    const producers = ctx.layers.map((l) => l.name).filter((n) => !inMlps.has(n));
    if (found.length === 0 && producers.length === 0) {
      throw new UserError(`prune.channels: ${ctx.where}.targets select no layer`);
    }
    // the recipe parser requires a calibration section for this (needsCalibration); direct callers must pass one
    if (params.importance === 'activation' && !ctx.calibration) throw new Error(`prune.channels: importance 'activation' needs ctx.calibration`);
    const stats = params.importance === 'activation' ? await ctx.calibration!.collect(model, found.map((m) => m.down), { sqnorm: true }) : undefined;
    const result: LayerStat[] = [];
    for (const [j, mlp] of found.entries()) {
      ctx.progress.layer(j, found.length, mlp.key);
      const t0 = performance.now();
      const width = mlp.down.inFeatures;
      const keepCount = Math.max(params.multiple_of, Math.round((width * (1 - params.sparsity)) / params.multiple_of) * params.multiple_of);
      const Wd = readWeight(model, mlp.down);
      const downCols = colNorms(Wd, mlp.down.outFeatures, width);
      const ins = mlp.ins.map((l) => ({ layer: l, W: readWeight(model, l) }));
      const score = new Float64Array(width);
      if (stats) {
        const sq = stats.get(mlp.down.input)!.sqnorm!;
        for (let c = 0; c < width; c++) score[c] = Math.sqrt(sq[c]!) * downCols[c]!;
      } else {
        // a fused layer's rows c and width + c are channel c's gate and up rows
        const inRows = ins.map(({ layer, W }) => rowNorms(W, layer.outFeatures, layer.inFeatures));
        for (let c = 0; c < width; c++) score[c] = downCols[c]! * inRows.reduce((a, n) => a + n[c]! + (mlp.fused ? n[width + c]! : 0), 0);
      }
      const keep = Array.from({ length: width }, (_, c) => c)
        .sort((a, b) => score[b]! - score[a]! || a - b)
        .slice(0, keepCount)
        .sort((a, b) => a - b);
      const before = (Wd.length + ins.reduce((a, x) => a + x.W.length, 0)) * 4;
      for (const { layer, W } of ins) {
        const rows = mlp.fused ? fusedRows(mlp.fused, [keep, keep]) : keep;
        resizeLayer(model, layer, takeRows(W, layer.inFeatures, rows), rows.length, layer.inFeatures);
        if (layer.bias) sliceVector(model, layer.bias, rows);
      }
      if (mlp.fused) resizeSplit(model, new GraphIndex(model.graph), mlp.fused, [keepCount, keepCount]);
      resizeLayer(model, mlp.down, takeCols(Wd, mlp.down.outFeatures, width, keep), mlp.down.outFeatures, keepCount);
      const after = keepCount * (mlp.down.outFeatures + ins.reduce((a, x) => a + x.layer.inFeatures * (mlp.fused ? 2 : 1), 0)) * 4;
      result.push({ name: mlp.key, kind: 'mlp', shape: [width, keepCount], ms: performance.now() - t0, bytes_before: before, bytes_after: after, extra: { channels_before: width, channels_after: keepCount } });
    }
    const warnings: string[] = [];
    const refused: string[] = [];
    for (const [j, name] of producers.entries()) {
      ctx.progress.layer(found.length + j, found.length + producers.length, name);
      const t0 = performance.now();
      // layers are looked up again by name: an earlier removal rewrote their weights and shapes
      const all = linears(model);
      const layer = all.find((l) => l.name === name);
      if (!layer) throw new Error(`prune.channels: layer '${name}' vanished after an earlier removal`);
      const trace = traceChannels(model, new GraphIndex(model.graph), all, layer);
      if ('refused' in trace) {
        refused.push(`'${name}' (${trace.refused})`);
        continue;
      }
      const width = layer.outFeatures;
      const keepCount = Math.max(params.multiple_of, Math.round((width * (1 - params.sparsity)) / params.multiple_of) * params.multiple_of);
      if (keepCount >= width) continue;
      // channel importance: the L2 norm of each output row (a conv's filter)
      const norms = rowNorms(readWeight(model, layer), width, layer.inFeatures);
      const keep = Array.from({ length: width }, (_, c) => c)
        .sort((a, b) => norms[b]! - norms[a]! || a - b)
        .slice(0, keepCount)
        .sort((a, b) => a - b);
      const r = removeChannels(model, trace.plan, keep);
      result.push({
        name,
        kind: layer.kind === 'conv' ? 'conv' : 'channels',
        shape: [width, keepCount],
        ms: performance.now() - t0,
        bytes_before: r.bytesBefore,
        bytes_after: r.bytesAfter,
        extra: { channels_before: width, channels_after: keepCount, consumers: trace.plan.consumers.length },
      });
    }
    if (result.length === 0 && refused.length > 0) {
      throw new UserError(`prune.channels: ${ctx.where}.targets: no selected layer's channels can be removed: ${refused.join('; ')}. Target layers whose outputs feed other layers only through ops that keep channels apart`);
    }
    if (refused.length > 0) warnings.push(`kept whole: ${refused.join('; ')}`);
    return { layers: result, warnings };
  },
});
