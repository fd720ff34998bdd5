import { readWeight, writeWeight } from '../model/linear-weights.js';
import { eachCalibratedLayer } from '../pass/layer-loop.js';
import { z } from 'zod';
import { assertLayersFit, definePass, onValidFields } from '../pass/pass.js';
import { nmShapeProblems, PRUNE_FIELDS } from './magnitude.js';
import { OWL_FIELD, owlLayerSparsities, owlPatternRule } from './owl.js';
import { applyMask, nmMask, type NmPattern, rowwiseSmallestMask, sparseBytes, zeroFraction } from './masks.js';

/**
 * Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language Models"):
 * score S_ij = |W_ij| · ‖X_j‖₂ with X the layer's calibration inputs, compared within each output
 * row (per-output comparison group), no weight update. N:M keeps the n best scores of every m.
 */

/** In place: prune W [rows, cols] by Wanda scores given Σ x_j² per input channel. Returns the mask. */
export function wandaPrune(W: Float32Array, rows: number, cols: number, sqnorm: Float64Array, opts: { sparsity: number; pattern: NmPattern | undefined }): Uint8Array {
  const scores = new Float32Array(W.length);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) scores[r * cols + j] = Math.abs(W[r * cols + j]!) * Math.sqrt(sqnorm[j]!);
  }
  const nm = opts.pattern;
  const mask = nm ? nmMask(scores, rows, cols, nm.n, nm.m) : rowwiseSmallestMask(scores, rows, cols, Math.round(opts.sparsity * cols));
  applyMask(W, mask);
  return mask;
}

export const wanda = definePass({
  id: 'prune.wanda',
  summary: 'Wanda: prune by |weight| × input-activation norm, compared within each output row; unstructured or N:M',
  params: z.strictObject({ ...PRUNE_FIELDS, ...OWL_FIELD }).superRefine(owlPatternRule, onValidFields),
  needsCalibration: () => ({ need: 'required' }),
  eligible: (layer) => layer.kind !== 'conv',
  checkLayers(params, layers) {
    return nmShapeProblems(this.id, params.pattern, layers);
  },
  async apply(model, params, ctx) {
    assertLayersFit(nmShapeProblems(this.id, params.pattern, ctx.layers));
    const owl = params.owl && (await owlLayerSparsities(model, ctx, params.sparsity, params.owl, this.id));
    const layers = await eachCalibratedLayer(model, ctx, { sqnorm: true }, async (layer, stats) => {
      const W = readWeight(model, layer);
      wandaPrune(W, layer.outFeatures, layer.inFeatures, stats.sqnorm!, { sparsity: owl ? owl.byLayer.get(layer.name)! : params.sparsity, pattern: params.pattern });
      writeWeight(model, layer, W);
      return { bytes_before: W.length * 4, bytes_after: W.length * 4, sparsity: zeroFraction(W), extra: { sparse_bytes: sparseBytes(W), ...owl?.extra(layer) } };
    });
    return { layers, warnings: [], ...(owl && { summary: owl.summary }) };
  },
});
