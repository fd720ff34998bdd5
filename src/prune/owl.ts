import { z } from 'zod';
import { blockKey } from '../calibrate/blocks.js';
import type { InputStats } from '../calibrate/stats.js';
import { UserError } from '../errors.js';
import { readWeight } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import type { PassContext } from '../pass/pass.js';
import { formatPattern, type NmPattern } from './masks.js';

/**
 * OWL (Yin et al. 2024, "Outlier Weighed Layerwise Sparsity: A Missing Secret Sauce for Pruning
 * LLMs to High Sparsity"): a unit (a single linear, or a block as in the paper) whose Wanda scores
 * |W_ij|·‖X_j‖₂ hold more outliers keeps more weights. D_l is the fraction of a unit's scores above
 * M × their mean; with n_l = (D_l − min D)/(max D − min D) the unit's sparsity is
 * s_l = s + λ·(1 − 2·n_l) + c, in [s − λ, s + λ] before the shift c, which makes the
 * parameter-weighted mean of s_l equal the target s (the authors' code uses the plain mean over
 * equally sized blocks, the same thing there). Ratios come from the model before the pass.
 */

export const OwlParams = z.strictObject({
  m: z.number().positive().default(5).describe('M: a score is an outlier above M × the unit mean (paper: 5)'),
  lambda: z.number().min(0).max(0.5).default(0.08).describe('λ: unit sparsities span s ± λ (paper: 0.08)'),
  // layer, not the paper's block: it beat uniform sparsity on both stories260K and shakespeare-char, block only on the first (bench/RESULTS.md, OWL)
  unit: z.enum(['block', 'layer']).default('layer').describe('layer: one sparsity per linear; block: one per transformer block (the paper)'),
});
export type OwlOptions = z.output<typeof OwlParams>;

/** OWL sets unstructured per-unit sparsities; N:M fixes every row's at 1 − N/M (a superRefine of the pruners' params). */
export function owlPatternRule(p: { owl?: OwlOptions; pattern?: NmPattern }, ctx: z.RefinementCtx): void {
  if (p.owl && p.pattern) ctx.addIssue({ code: 'custom', path: ['owl'], message: `owl varies unstructured sparsity per block; pattern ${formatPattern(p.pattern)} fixes it at ${1 - p.pattern.n / p.pattern.m}. Drop owl or set pattern: unstructured` });
}

export const OWL_FIELD = {
  owl: OwlParams.optional().describe('outlier-weighted layerwise sparsity: non-uniform per-unit sparsity at the same global sparsity'),
};

/** Wanda scores |W_ij|·‖X_j‖₂ of W [rows, cols], given Σ x_j² per input channel. */
export function wandaScores(W: Float32Array, rows: number, cols: number, sqnorm: Float64Array): Float64Array {
  const scores = new Float64Array(W.length);
  for (let j = 0; j < cols; j++) {
    const norm = Math.sqrt(sqnorm[j]!);
    for (let r = 0; r < rows; r++) scores[r * cols + j] = Math.abs(W[r * cols + j]!) * norm;
  }
  return scores;
}

/** D: the fraction of the scores (all of a unit's layers together) above M × their mean. */
export function outlierRatio(scoreSets: readonly Float64Array[], m: number): number {
  let n = 0;
  let sum = 0;
  for (const s of scoreSets) for (const v of s) sum += v, n++;
  const threshold = (m * sum) / n;
  let above = 0;
  for (const s of scoreSets) for (const v of s) if (v > threshold) above++;
  return above / n;
}

/** Per-unit sparsities from outlier ratios D and parameter counts, so Σ p_l s_l / Σ p_l = target. */
export function owlSparsities(ratios: readonly number[], params: readonly number[], target: number, lambda: number): number[] {
  const lo = Math.min(...ratios);
  const span = Math.max(...ratios) - lo;
  const raw = ratios.map((d) => target + lambda * (1 - 2 * (span > 0 ? (d - lo) / span : 0.5)));
  const total = params.reduce((a, b) => a + b, 0);
  const mean = raw.reduce((a, s, i) => a + s * params[i]!, 0) / total;
  return raw.map((s) => s + target - mean);
}

export interface OwlUnit {
  key: string;
  outlierRatio: number;
  sparsity: number;
}

export interface OwlPlan {
  byLayer: Map<string, number>;
  units: OwlUnit[];
  /** the layer's report fields */
  extra(layer: LinearLayer): Record<string, number | string>;
  /** the pass summary: each unit's outlier ratio and sparsity */
  summary: Record<string, number | string>;
}

/** The OWL sparsity of each selected layer, measured on `model` as the pass found it. */
export async function owlLayerSparsities(model: Model, ctx: PassContext, target: number, opts: OwlOptions, pass: string): Promise<OwlPlan> {
  const stats: Map<string, InputStats> = await ctx.calibration!.collect(model, ctx.layers, { sqnorm: true });
  const unitOf = (layer: LinearLayer) => (opts.unit === 'block' ? blockKey(layer.name) : layer.name);
  const keys = [...new Set(ctx.layers.map(unitOf))];
  const ratios: number[] = [];
  const sizes: number[] = [];
  for (const key of keys) {
    const members = ctx.layers.filter((l) => unitOf(l) === key);
    const scores = members.map((l) => wandaScores(readWeight(model, l), l.outFeatures, l.inFeatures, stats.get(l.input)!.sqnorm!));
    ratios.push(outlierRatio(scores, opts.m));
    sizes.push(members.reduce((a, l) => a + l.outFeatures * l.inFeatures, 0));
  }
  const sparsities = owlSparsities(ratios, sizes, target, opts.lambda);
  const bad = sparsities.findIndex((s) => s < 0 || s >= 1);
  if (bad >= 0) {
    throw new UserError(`${ctx.where}.params.owl.lambda: ${pass} would give '${keys[bad]}' sparsity ${sparsities[bad]!.toFixed(3)}, outside [0, 1) at sparsity ${target}; lower owl.lambda below ${Math.min(target, 1 - target).toFixed(3)}`);
  }
  const units = keys.map((key, i) => ({ key, outlierRatio: ratios[i]!, sparsity: sparsities[i]! }));
  const unitIndex = (l: LinearLayer) => keys.indexOf(unitOf(l));
  const byLayer = new Map(ctx.layers.map((l) => [l.name, sparsities[unitIndex(l)]!]));
  return {
    byLayer,
    units,
    extra: (l) => ({ owl_unit: keys[unitIndex(l)]!, owl_outlier_ratio: ratios[unitIndex(l)]!, owl_sparsity: sparsities[unitIndex(l)]! }),
    summary: { owl_units: units.map((u) => `${u.key} ${(100 * u.sparsity).toFixed(1)}% (D ${(100 * u.outlierRatio).toFixed(2)}%)`).join(', ') },
  };
}
