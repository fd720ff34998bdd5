import { z } from 'zod';
import { readWeight, writeWeight } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import { definePass, type LayerStat } from '../pass/pass.js';
import { dequantizeMatrix, quantizeMatrix, type GridSpec } from './grid.js';
import { WEIGHT_QUANT_FIELDS } from './params.js';
import { foldGroups, foldInverse, foldName } from './smoothquant.js';

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
 * error is the group's linear outputs rather than the whole attention/MLP output; v_proj → o_proj
 * is not scaled (no exact fold through grouped-query attention).
 */

/** The grid the next pass rounds to; AWQ itself stores nothing, so no storage format. */
const AwqParams = z.strictObject({
  bits: WEIGHT_QUANT_FIELDS.bits,
  granularity: WEIGHT_QUANT_FIELDS.granularity,
  group_size: WEIGHT_QUANT_FIELDS.group_size,
  symmetric: WEIGHT_QUANT_FIELDS.symmetric,
  grid: z.number().int().min(1).max(100).default(20).describe('α candidates 0, 1/grid, …, (grid−1)/grid'),
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
  scales: Float64Array;
  errorBefore: number;
  errorAfter: number;
}

/** The α of the grid with the lowest output error of the layers (weights [rows_i, K]) reading X. */
export function searchAlpha(weights: { W: Float32Array; rows: number }[], K: number, G: Float64Array, n: number, spec: GridSpec, grid: number): AwqChoice {
  const magnitude = Float64Array.from({ length: K }, (_, j) => Math.sqrt(Math.max(G[j * K + j]!, 0) / Math.max(n, 1)));
  let best: AwqChoice | undefined;
  for (let i = 0; i < grid; i++) {
    const alpha = i / grid;
    const s = awqScales(magnitude, alpha);
    let err = 0;
    for (const { W, rows } of weights) err += gramError(W, scaledRounding(W, rows, K, s, spec), rows, K, G);
    if (!best) best = { alpha, scales: s, errorBefore: err, errorAfter: err };
    else if (err < best.errorAfter) best = { ...best, alpha, scales: s, errorAfter: err };
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
    const layers: LayerStat[] = [];
    const warnings: string[] = [];
    let done = 0;
    for (const [x, group] of byInput) {
      const t0 = performance.now();
      const current = group;
      const fold = foldOf(x);
      const K = current[0]!.inFeatures;
      const s = stats.get(x)!;
      const weights = current.map((l) => ({ W: readWeight(model, l), rows: l.outFeatures }));
      const bytes = (l: LinearLayer) => l.outFeatures * l.inFeatures * 4;
      if (!fold) {
        warnings.push(`no norm or linear to fold AWQ scales into before ${group.map((l) => `'${l.name}'`).join(', ')}; left unscaled`);
        done += group.length;
        continue;
      }
      const choice = searchAlpha(weights, K, s.xtx!, s.rows, spec, params.grid);
      current.forEach((l, g) => {
        ctx.progress.layer(done++, ctx.layers.length, l.name);
        const W = weights[g]!.W;
        for (let r = 0; r < l.outFeatures; r++) for (let j = 0; j < K; j++) W[r * K + j] = W[r * K + j]! * choice.scales[j]!;
        writeWeight(model, l, W);
      });
      foldInverse(model, fold, Float64Array.from(choice.scales, (v) => 1 / v));
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
          extra: { alpha: choice.alpha, rounding_error_unscaled: choice.errorBefore / Math.max(s.rows, 1), folded_into: foldName(fold) },
        });
      }
    }
    return { layers, warnings };
  },
});
