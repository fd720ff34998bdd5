import { z } from 'zod';
import { readWeight, writeWeight } from '../model/linear-weights.js';
import { GraphIndex } from '../model/graph.js';
import { linears, type LinearLayer } from '../model/linears.js';
import { definePass, type LayerStat } from '../pass/pass.js';
import { dequantizeMatrix, quantizeMatrix, type GridSpec } from './grid.js';
import { WEIGHT_QUANT_FIELDS } from './params.js';
import { expandScales, foldVoInverse, voFold, voRows, type VoFold } from './awq-vo.js';
import { foldGroups, foldInverse, foldName, type Fold } from './smoothquant.js';

/**
 * AWQ (Lin et al. 2024, "AWQ: Activation-aware Weight Quantization"): scale each input channel j of
 * the layers reading one activation by s_j = a_j^α, a_j the channel's activation magnitude, so that
 * rounding W·diag(s) hurts salient channels less; 1/s is folded into what produces the activation
 * (the norm, or up_proj's rows before down_proj) exactly as SmoothQuant folds it, so the float model
 * computes the same outputs. α is searched on a grid of 20 (0, 0.05, …, 0.95, as the reference) for
 * the lowest output error of the group's layers on the calibration inputs,
 *   Σ_layers ‖X·(W − Q(W·diag(s))·diag(1/s))ᵀ‖² = Σ_rows Δwᵀ·XᵀX·Δw,
 * Q the round-to-nearest grid of the params (the grid the next pass quantizes to). α = 0 is s = 1,
 * so the chosen scales never raise that error. The pass leaves float weights: put quantize.gptq or
 * quantize.rtn with the same grid after it. Departures from the reference: a_j is the RMS of the
 * channel (√(XᵀX)_jj/n, from the Hessian statistics GPTQ reads too) rather than mean |x_j|; the
 * error is the group's linear outputs rather than the whole attention/MLP output. o_proj's inputs
 * fold into v_proj's output rows where V's way through attention is provably per channel (awq-vo.ts).
 */

/** The grid the next pass rounds to; AWQ itself stores nothing, so no storage format. */
const AwqParams = z.strictObject({
  bits: WEIGHT_QUANT_FIELDS.bits,
  granularity: WEIGHT_QUANT_FIELDS.granularity,
  group_size: WEIGHT_QUANT_FIELDS.group_size,
  symmetric: WEIGHT_QUANT_FIELDS.symmetric,
  grid: z.number().int().min(1).max(100).default(20).describe('α candidates 0, 1/grid, …, (grid−1)/grid'),
  v_to_o: z.boolean().default(true).describe("scale o_proj's inputs too, folding 1/s into v_proj's output rows (one scale per v channel, shared by its query heads under GQA)"),
});
type AwqParams = z.output<typeof AwqParams>;

function awqGrid(p: AwqParams): GridSpec {
  return { bits: p.bits, granularity: p.granularity === 'group' ? { kind: 'group', size: p.group_size } : { kind: p.granularity }, symmetric: p.symmetric };
}

/** Σ_rows Δwᵀ·G·Δw for Δw = W − Ŵ ([rows, K]), G = XᵀX (float64, K×K). */
export function gramError(W: Float32Array, Wq: Float32Array, rows: number, K: number, G: Float64Array): number {
  const d = new Float64Array(K);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < K; j++) d[j] = W[r * K + j]! - Wq[r * K + j]!;
    for (let a = 0; a < K; a++) {
      if (d[a] === 0) continue;
      let s = 0;
      for (let b = 0; b < K; b++) s += G[a * K + b]! * d[b]!;
      total += d[a]! * s;
    }
  }
  return total;
}

/** s = a^α, normalised by √(max·min) as the reference does, so the grid sits mid-range. */
export function awqScales(magnitude: Float64Array, alpha: number): Float64Array {
  const s = Float64Array.from(magnitude, (a) => Math.max(a, 1e-8) ** alpha);
  let max = 0;
  let min = Infinity;
  for (const v of s) [max, min] = [Math.max(max, v), Math.min(min, v)];
  const norm = Math.sqrt(max * min);
  for (let j = 0; j < s.length; j++) s[j] = s[j]! / norm;
  return s;
}

/** Ŵ = Q(W·diag(s))·diag(1/s): what the layer computes once scaled and rounded, in the unscaled basis. */
export function scaledRounding(W: Float32Array, rows: number, K: number, s: Float64Array, spec: GridSpec): Float32Array {
  const Ws = new Float32Array(W.length);
  for (let r = 0; r < rows; r++) for (let j = 0; j < K; j++) Ws[r * K + j] = W[r * K + j]! * s[j]!;
  const q = dequantizeMatrix(quantizeMatrix(Ws, rows, K, spec));
  for (let r = 0; r < rows; r++) for (let j = 0; j < K; j++) q[r * K + j] = q[r * K + j]! / s[j]!;
  return q;
}

export interface AwqChoice {
  alpha: number;
  /** per input */
  scales: Float64Array;
  /** per shared channel (= scales without `channelOf`) */
  shared: Float64Array;
  errorBefore: number;
  errorAfter: number;
}

/**
 * The α of the grid with the lowest output error of the layers (weights [rows_i, K]) reading X.
 * With `channelOf` (input j → shared channel c, as o_proj's inputs read v channels) the inputs of one
 * c share a scale, from their pooled RMS; `scales` is then per input, expanded.
 */
export function searchAlpha(weights: { W: Float32Array; rows: number }[], K: number, G: Float64Array, n: number, spec: GridSpec, grid: number, channelOf?: Int32Array): AwqChoice {
  const C = channelOf ? Math.max(...channelOf) + 1 : K;
  const sum = new Float64Array(C);
  const count = new Float64Array(C);
  for (let j = 0; j < K; j++) {
    const c = channelOf ? channelOf[j]! : j;
    sum[c] += Math.max(G[j * K + j]!, 0);
    count[c]++;
  }
  const magnitude = Float64Array.from(sum, (v, c) => Math.sqrt(v / Math.max(n * count[c]!, 1)));
  let best: AwqChoice | undefined;
  for (let i = 0; i < grid; i++) {
    const alpha = i / grid;
    const shared = awqScales(magnitude, alpha);
    const s = channelOf ? Float64Array.from(channelOf, (c) => shared[c]!) : shared;
    let err = 0;
    for (const { W, rows } of weights) err += gramError(W, scaledRounding(W, rows, K, s, spec), rows, K, G);
    if (!best) best = { alpha, scales: s, shared, errorBefore: err, errorAfter: err };
    else if (err < best.errorAfter) best = { ...best, alpha, scales: s, shared, errorAfter: err };
  }
  return best!;
}

export const awq = definePass({
  id: 'quantize.awq',
  summary: 'AWQ: per-input-channel scales searched on calibration data for the grid the next pass rounds to, folded into the preceding norm or linear (float weights stay; follow with quantize.gptq or quantize.rtn)',
  params: AwqParams,
  needsCalibration: () => ({ need: 'required' }),
  eligible: (layer) => layer.kind === 'matmul' || layer.kind === 'gemm',
  async apply(model, params: AwqParams, ctx) {
    const spec = awqGrid(params);
    const stats = await ctx.calibration!.collect(model, ctx.layers, { hessian: true });
    const { byInput, foldOf } = foldGroups(model, ctx.layers);
    const index = new GraphIndex(model.graph);
    const all = linears(model).map((l) => ctx.layers.find((t) => t.node === l.node) ?? l);
    const layers: LayerStat[] = [];
    const warnings: string[] = [];
    let done = 0;
    for (const [x, group] of byInput) {
      const t0 = performance.now();
      const current = group;
      let fold: Fold | undefined = foldOf(x);
      let vo: VoFold | undefined;
      let why = '';
      if (!fold && params.v_to_o && group.length === 1) {
        const found = voFold(model, index, all, group[0]!);
        if ('refused' in found) why = ` (${found.refused})`;
        else [vo, fold] = [found, voRows(found)];
      }
      const K = current[0]!.inFeatures;
      const s = stats.get(x)!;
      const weights = current.map((l) => ({ W: readWeight(model, l), rows: l.outFeatures }));
      const bytes = (l: LinearLayer) => l.outFeatures * l.inFeatures * 4;
      if (!fold) {
        warnings.push(`no norm or linear to fold AWQ scales into before ${group.map((l) => `'${l.name}'`).join(', ')}; left unscaled${why}`);
        done += group.length;
        continue;
      }
      const choice = searchAlpha(weights, K, s.xtx!, s.rows, spec, params.grid, vo?.channelOf);
      current.forEach((l, g) => {
        ctx.progress.layer(done++, ctx.layers.length, l.name);
        const W = weights[g]!.W;
        for (let r = 0; r < l.outFeatures; r++) for (let j = 0; j < K; j++) W[r * K + j] = W[r * K + j]! * choice.scales[j]!;
        writeWeight(model, l, W);
      });
      // v_proj's row c (and its bias) carries every o_proj input j with c(j) = c
      if (vo) foldVoInverse(model, vo, expandScales(vo, choice.shared).rowsInverse);
      else foldInverse(model, fold, Float64Array.from(choice.scales, (v) => 1 / v));
      const ms = performance.now() - t0;
      for (const l of current) {
        layers.push({
          name: l.name,
          kind: l.kind,
          shape: [l.outFeatures, l.inFeatures],
          ms: ms / group.length,
          bytes_before: bytes(l),
          bytes_after: bytes(l),
          objective: choice.errorAfter / Math.max(s.rows, 1),
          extra: { alpha: choice.alpha, rounding_error_unscaled: choice.errorBefore / Math.max(s.rows, 1), folded_into: foldName(fold), ...(vo ? { heads_per_scale: vo.heads / vo.groups } : {}) },
        });
      }
    }
    return { layers, warnings };
  },
});
