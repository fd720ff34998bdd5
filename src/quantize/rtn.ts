import { z } from 'zod';
import { UserError } from '../errors.js';
import { readWeight } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { eachLayer } from '../pass/layer-loop.js';
import { definePass } from '../pass/pass.js';
import { emitDequantizeLinear, emitMatMulNBits } from './emit.js';
import { dequantizeMatrix, quantizeMatrix, type QuantizedMatrix } from './grid.js';
import { formatOf, gridSpec, quantizedBytes, WeightQuantParams } from './params.js';

/**
 * Round-to-nearest weight-only quantization: each weight goes to the nearest point of its group's
 * uniform grid, optionally after an MSE search of the clipping range. The baseline GPTQ improves on.
 */

const RtnParams = WeightQuantParams.extend({
  mse_clip: z.boolean().default(false).describe('search a shrunken range per group for the lowest error (slower)'),
});

/** Store a quantized matrix in the requested ONNX form. */
export function emitQuantized(model: Model, layer: LinearLayer, m: QuantizedMatrix, p: WeightQuantParams): void {
  if (formatOf(p) === 'qdq') emitDequantizeLinear(model, layer, m);
  else emitMatMulNBits(model, layer, m, p.accuracy_level);
}

export function checkQuantizable(pass: string, layer: LinearLayer, p: WeightQuantParams): void {
  if (p.granularity === 'group' && layer.inFeatures % p.group_size !== 0) {
    throw new UserError(`${pass}: '${layer.name}' has ${layer.inFeatures} inputs, not a multiple of group_size ${p.group_size}; pick a divisor or add it to ignore:`);
  }
  if (formatOf(p) === 'matmulnbits' && layer.kind === 'conv') {
    throw new UserError(`${pass}: '${layer.name}' is a conv; format matmulnbits rewrites MatMul and Gemm only, use format: qdq (8-bit) or leave it out of targets`);
  }
  if (formatOf(p) === 'matmulnbits' && p.granularity !== 'group') {
    throw new UserError(`${pass}: format matmulnbits stores per-block scales; set granularity: group with group_size 16..256`);
  }
}

export function squaredError(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}

export const rtn = definePass({
  id: 'quantize.rtn',
  summary: 'round-to-nearest weight quantization, 8/4-bit (3/2 in a 4-bit container), per tensor/channel/group, stored as DequantizeLinear or MatMulNBits',
  params: RtnParams,
  needsCalibration: false,
  async apply(model, params, ctx) {
    for (const layer of ctx.layers) checkQuantizable(this.id, layer, params);
    const layers = await eachLayer(ctx, (layer) => {
      const W = readWeight(model, layer);
      const m = quantizeMatrix(W, layer.outFeatures, layer.inFeatures, gridSpec(params, params.mse_clip));
      const err = squaredError(W, dequantizeMatrix(m));
      emitQuantized(model, layer, m, params);
      return {
        bytes_before: W.length * 4,
        bytes_after: quantizedBytes(layer.outFeatures, layer.inFeatures, params),
        objective: err,
        extra: { weight_rel_error: Math.sqrt(err / Math.max(squaredError(W, new Float32Array(W.length)), 1e-30)) },
      };
    });
    return { layers, warnings: [] };
  },
  estimateBytes: (layer, params) => quantizedBytes(layer.outFeatures, layer.inFeatures, params),
});
