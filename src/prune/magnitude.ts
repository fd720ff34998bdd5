/**
 * src/prune — a pass family (layer 11, beside quantize, decompose, share, distill; families never
 * import each other): one file per pruning method.
 */
import { z } from 'zod';
import { readWeight, writeWeight } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import { eachLayer } from '../pass/layer-loop.js';
import { assertLayersFit, definePass, type LayerProblem, onValidFields } from '../pass/pass.js';
import { absValues, applyMask, formatPattern, kthSmallest, nmMask, type NmPattern, parsePattern, smallestMask, sparseBytes, zeroFraction } from './masks.js';

/**
 * Magnitude pruning (Han et al. 2015; the baseline of SparseGPT and Wanda): zero the weights of
 * smallest |w|, either a fixed fraction of each layer, one threshold over all targeted layers, or
 * N:M (keep the n largest of every m consecutive inputs of a row, as sparse tensor cores want).
 */

/** The N:M pattern, parsed once when the recipe is: "2:4" -> {n: 2, m: 4}, "unstructured" -> undefined. */
const Pattern = z.codec(
  z
    .string()
    .regex(/^(unstructured|\d+:\d+)$/, 'expected "unstructured" or N:M such as "2:4"')
    .refine((p) => {
      const nm = parsePattern(p);
      return !nm || (nm.n >= 1 && nm.n < nm.m);
    }, 'N:M needs 1 <= N < M'),
  z.custom<NmPattern | undefined>(),
  { decode: parsePattern, encode: formatPattern },
);

/** The params every unstructured-or-N:M pruner shares. */
export const PRUNE_FIELDS = {
  sparsity: z.number().min(0).max(1).default(0.5).describe('fraction of weights set to zero (unstructured only; N:M implies 1 − N/M)'),
  pattern: Pattern.prefault('unstructured').describe('"unstructured", or N:M along the input dimension ("2:4", "4:8")'),
};

const MagnitudeParams = z
  .strictObject({
    ...PRUNE_FIELDS,
    scope: z.enum(['layer', 'global']).default('layer').describe('layer: each layer loses `sparsity` of its weights; global: one threshold over all targets'),
  })
  .superRefine((p, ctx) => {
    if (p.scope === 'global' && p.pattern) {
      ctx.addIssue({ code: 'custom', path: ['scope'], message: `scope global sets one threshold for unstructured pruning; pattern ${formatPattern(p.pattern)} keeps ${p.pattern.n} of every ${p.pattern.m} inputs in each row. Drop scope or set pattern: unstructured` });
    }
  }, onValidFields);

/** In place: zero `sparsity` of W by |w| (or N:M along the input dimension). Returns the mask. */
export function magnitudePrune(W: Float32Array, rows: number, cols: number, opts: { sparsity: number; pattern: NmPattern | undefined }): Uint8Array {
  const scores = absValues(W);
  const nm = opts.pattern;
  const mask = nm ? nmMask(scores, rows, cols, nm.n, nm.m) : smallestMask(scores, Math.round(opts.sparsity * W.length));
  applyMask(W, mask);
  return mask;
}

/** N:M needs each row's inputs to split into whole groups of m. */
export function nmShapeProblems(pass: string, pattern: NmPattern | undefined, layers: readonly LinearLayer[]): LayerProblem[] {
  if (!pattern) return [];
  return layers
    .filter((layer) => layer.inFeatures % pattern.m !== 0)
    .map((layer) => ({ param: 'pattern', message: `${pass}: '${layer.name}' has ${layer.inFeatures} inputs, not a multiple of ${pattern.m} for pattern ${formatPattern(pattern)}; add it to ignore:` }));
}

export const magnitude = definePass({
  id: 'prune.magnitude',
  summary: 'zero the smallest-magnitude weights: unstructured (per layer or global) or N:M',
  params: MagnitudeParams,
  needsCalibration: () => ({ need: 'none' }),
  checkLayers(params, layers) {
    return nmShapeProblems(this.id, params.pattern, layers);
  },
  async apply(model, params, ctx) {
    assertLayersFit(nmShapeProblems(this.id, params.pattern, ctx.layers));
    let globalThreshold: number | undefined;
    if (params.scope === 'global' && !params.pattern) {
      const all = ctx.layers.map((l) => absValues(readWeight(model, l)));
      const total = all.reduce((n, a) => n + a.length, 0);
      const joined = new Float32Array(total);
      let off = 0;
      for (const a of all) joined.set(a, (off += a.length) - a.length);
      globalThreshold = kthSmallest(joined, Math.round(params.sparsity * total));
    }
    const layers = await eachLayer(ctx, (layer) => {
      const W = readWeight(model, layer);
      if (globalThreshold !== undefined) {
        for (let i = 0; i < W.length; i++) if (Math.abs(W[i]!) <= globalThreshold) W[i] = 0;
      } else {
        magnitudePrune(W, layer.outFeatures, layer.inFeatures, params);
      }
      writeWeight(model, layer, W);
      return { bytes_before: W.length * 4, bytes_after: W.length * 4, sparsity: zeroFraction(W), extra: { sparse_bytes: sparseBytes(W) } };
    });
    return { layers, warnings: [] };
  },
  estimateBytes: (layer) => layer.outFeatures * layer.inFeatures * 4,
});
