import { z } from 'zod';
import { UserError } from '../errors.js';
import { readWeight, writeWeight } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import { eachLayer } from '../pass/layer-loop.js';
import { definePass } from '../pass/pass.js';
import { absValues, applyMask, kthSmallest, nmMask, parsePattern, smallestMask, sparseBytes, zeroFraction } from './masks.js';

/**
 * Magnitude pruning (Han et al. 2015; the baseline of SparseGPT and Wanda): zero the weights of
 * smallest |w|, either a fixed fraction of each layer, one threshold over all targeted layers, or
 * N:M (keep the n largest of every m consecutive inputs of a row, as sparse tensor cores want).
 */

export const PruneParams = z.object({
  sparsity: z.number().min(0).max(1).default(0.5).describe('fraction of weights set to zero (unstructured only; N:M implies 1 − N/M)'),
  pattern: z
    .string()
    .regex(/^(unstructured|\d+:\d+)$/, 'expected "unstructured" or N:M such as "2:4"')
    .refine((p) => {
      const nm = parsePattern(p);
      return !nm || (nm.n >= 1 && nm.n < nm.m);
    }, 'N:M needs 1 <= N < M')
    .default('unstructured')
    .describe('"unstructured", or N:M along the input dimension ("2:4", "4:8")'),
});

const MagnitudeParams = PruneParams.extend({
  scope: z.enum(['layer', 'global']).default('layer').describe('layer: each layer loses `sparsity` of its weights; global: one threshold over all targets'),
});

/** In place: zero `sparsity` of W by |w| (or N:M along the input dimension). Returns the mask. */
export function magnitudePrune(W: Float32Array, rows: number, cols: number, opts: { sparsity: number; pattern: string }): Uint8Array {
  const scores = absValues(W);
  const nm = parsePattern(opts.pattern);
  const mask = nm ? nmMask(scores, rows, cols, nm.n, nm.m) : smallestMask(scores, Math.round(opts.sparsity * W.length));
  applyMask(W, mask);
  return mask;
}

export function checkNmShape(pass: string, layer: LinearLayer, pattern: string): void {
  const nm = parsePattern(pattern);
  if (nm && layer.inFeatures % nm.m !== 0) {
    throw new UserError(`${pass}: '${layer.name}' has ${layer.inFeatures} inputs, not a multiple of ${nm.m} for pattern ${pattern}; add it to ignore:`);
  }
}

export const magnitude = definePass({
  id: 'prune.magnitude',
  summary: 'zero the smallest-magnitude weights: unstructured (per layer or global) or N:M',
  params: MagnitudeParams,
  needsCalibration: false,
  async apply(model, params, ctx) {
    for (const layer of ctx.layers) checkNmShape(this.id, layer, params.pattern);
    let globalThreshold: number | undefined;
    if (params.scope === 'global' && !parsePattern(params.pattern)) {
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
