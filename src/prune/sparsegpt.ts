import { z } from 'zod';
import { readWeight, writeWeight } from '../model/linear-weights.js';
import { obsBlockLoop } from '../obs/block-loop.js';
import { prepareHessian } from '../obs/hessian.js';
import { reconstructionError } from '../obs/output-error.js';
import { eachCalibratedLayer } from '../pass/layer-loop.js';
import { assertLayersFit, definePass, onValidFields } from '../pass/pass.js';
import { nmShapeProblems, PRUNE_FIELDS } from './magnitude.js';
import { OWL_FIELD, owlLayerSparsities, owlPatternRule } from './owl.js';
import { type NmPattern, smallestMask, sparseBytes, zeroFraction } from './masks.js';

/**
 * SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately
 * Pruned in One-Shot"): prune W column block by column block; within a block the mask is chosen
 * adaptively by the OBS saliency w² / [H⁻¹]_jj² on the already-updated weights, and each pruned
 * weight's error is compensated on the remaining columns (the shared OBS block loop). N:M picks,
 * every m columns, the m − n least salient weights of each row.
 */

const SparseGptParams = z
  .strictObject({
    ...PRUNE_FIELDS,
    ...OWL_FIELD,
    dampening: z.number().min(0).max(1).default(0.01).describe('λ: H += λ·mean(diag H)·I'),
    block_size: z.number().int().min(1).default(128).describe('columns per block (mask selection and lazy update)'),
  })
  .superRefine(owlPatternRule, onValidFields);

/** In place on W [rows, cols]; returns the OBS loss estimate. */
export async function sparsegptPrune(
  W: Float32Array,
  rows: number,
  cols: number,
  Hinv: Float64Array,
  opts: { sparsity: number; pattern: NmPattern | undefined; blockSize: number },
): Promise<{ loss: number }> {
  const nm = opts.pattern;
  let mask = new Uint8Array(0);
  let block: { i1: number; count: number; W1: Float32Array; diag: Float32Array } | undefined;
  return obsBlockLoop(W, rows, cols, Hinv, opts.blockSize, {
    beginBlock(i1, i2, W1, diag) {
      const count = i2 - i1;
      block = { i1, count, W1, diag };
      mask = new Uint8Array(rows * count);
      if (nm) return;
      // adaptive mask: the block's least salient weights, w² / d²
      const scores = new Float32Array(rows * count);
      for (let r = 0; r < rows; r++) for (let c = 0; c < count; c++) scores[r * count + c] = W1[r * count + c]! ** 2 / diag[c]! ** 2;
      smallestMask(scores, Math.round(opts.sparsity * rows * count), mask);
    },
    column(i, w, q) {
      const { i1, count, W1, diag } = block!;
      const c = i - i1;
      if (nm && c % nm.m === 0) {
        // N:M: in each row, the m − n least salient of the next m columns, on current weights
        const width = Math.min(nm.m, count - c);
        const order = Array.from({ length: width }, (_, k) => k);
        for (let r = 0; r < rows; r++) {
          const s = (k: number) => W1[r * count + c + k]! ** 2 / diag[c + k]! ** 2;
          order.sort((a, b) => s(a) - s(b) || a - b);
          for (let k = 0; k < nm.m - nm.n && k < width; k++) mask[r * count + c + order[k]!] = 1;
        }
      }
      for (let r = 0; r < rows; r++) q[r] = mask[r * count + c] ? 0 : w[r]!;
    },
  });
}

export const sparsegpt = definePass({
  id: 'prune.sparsegpt',
  summary: 'SparseGPT: one-shot pruning with OBS weight updates from calibration Hessians; unstructured or N:M',
  params: SparseGptParams,
  needsCalibration: () => ({ need: 'required' }),
  eligible: (layer) => layer.kind !== 'conv',
  checkLayers(params, layers) {
    return nmShapeProblems(this.id, params.pattern, layers);
  },
  async apply(model, params, ctx) {
    assertLayersFit(nmShapeProblems(this.id, params.pattern, ctx.layers));
    const nm = params.pattern;
    const blockSize = nm ? Math.ceil(params.block_size / nm.m) * nm.m : params.block_size;
    const owl = params.owl && (await owlLayerSparsities(model, ctx, params.sparsity, params.owl, this.id));
    const layers = await eachCalibratedLayer(model, ctx, { hessian: true }, async (layer, s) => {
      const rows = layer.outFeatures;
      const W = readWeight(model, layer);
      const original = W.slice();
      const prepared = await prepareHessian(s, W, rows, { dampening: params.dampening, pass: this.id, layer: layer.name });
      const { loss } = await sparsegptPrune(W, rows, layer.inFeatures, prepared.Hinv, { sparsity: owl ? owl.byLayer.get(layer.name)! : params.sparsity, pattern: params.pattern, blockSize });
      writeWeight(model, layer, W);
      return {
        bytes_before: W.length * 4,
        bytes_after: W.length * 4,
        objective: await reconstructionError(original, W, rows, s),
        sparsity: zeroFraction(W),
        extra: { obs_loss: loss, sparse_bytes: sparseBytes(W), dead_inputs: prepared.dead, ...owl?.extra(layer) },
      };
    });
    return { layers, warnings: [], ...(owl && { summary: owl.summary }) };
  },
});
