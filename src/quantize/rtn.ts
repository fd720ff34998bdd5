/**
 * src/quantize — a pass family (layer 11): one file per quantization method; params.ts, grid.ts and
 * emit.ts are what the quantizers share.
 */
import { z } from 'zod';
import { readWeight } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { eachCalibratedLayer, eachLayer, type LayerOutcome } from '../pass/layer-loop.js';
import { assertLayersFit, definePass, onValidFields } from '../pass/pass.js';
import type { InputStats } from '../calibrate/stats.js';
import { addOutputBias, biasCorrectionProblems, BIAS_CORRECTION_FIELD, correctionBias, meanInput } from './bias-correction.js';
import { emitDequantizeLinear, emitMatMulNBits } from './emit.js';
import { dequantizeMatrix, quantizeMatrix, type QuantizedMatrix, storedScale } from './grid.js';
import { refitScales } from './refit.js';
import { refitScalesOffsets } from './refit-offset.js';
import { formatOf, gridSpec, quantizedBytes, prepareOpset, quantizeLayerProblems, WEIGHT_QUANT_FIELDS, type WeightQuantParams, weightQuantRules } from './params.js';

/**
 * Round-to-nearest weight-only quantization: each weight goes to the nearest point of its group's
 * uniform grid, optionally after an MSE search of the clipping range. The baseline GPTQ improves on.
 */

const RtnParams = z
  .strictObject({
    ...WEIGHT_QUANT_FIELDS,
    mse_clip: z.boolean().default(false).describe('search a shrunken range per group for the lowest error (slower)'),
    refit_scales: z.boolean().optional().describe('(default false) after rounding, refit each group\'s scale to its codes by least squares on the weight error (Σ a·w / Σ a², a = q − zero); with float_zero_points, scale and zero point jointly'),
    ...BIAS_CORRECTION_FIELD,
  })
  .superRefine((p, ctx) => {
    weightQuantRules(p, ctx);
    if (p.refit_scales && p.granularity === 'tensor') ctx.addIssue({ code: 'custom', path: ['refit_scales'], message: 'refit_scales fits one scale per row or group; use granularity: channel or group' });
  }, onValidFields);

/** Store a quantized matrix in the requested ONNX form; `bias` (bias correction) is added to the layer's x·W. */
export function emitQuantized(model: Model, layer: LinearLayer, m: QuantizedMatrix, p: WeightQuantParams, bias?: Float32Array): void {
  if (formatOf(p) === 'qdq') {
    emitDequantizeLinear(model, layer, m);
    if (bias) addOutputBias(model, layer, bias);
  } else emitMatMulNBits(model, layer, m, p.accuracy_level, { scaleDtype: p.scale_dtype, packed3: p.packed_3bit, floatZeros: p.float_zero_points, bias });
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
  needsCalibration: (p) => (p?.bias_correction ? { need: 'required', param: 'bias_correction', instead: 'bias_correction: false' } : { need: 'none' }),
  checkLayers(params, layers) {
    return [...quantizeLayerProblems(this.id, params, layers), ...(params.bias_correction ? biasCorrectionProblems(this.id, layers) : [])];
  },
  async apply(model, params, ctx) {
    assertLayersFit(this.checkLayers!(params, ctx.layers));
    prepareOpset(model, this.id, params);
    // bias correction needs each layer's mean input; plain RTN reads no data
    const each = (fn: (layer: LinearLayer, stats?: InputStats) => Promise<LayerOutcome>) => (params.bias_correction ? eachCalibratedLayer(model, ctx, { sum: true }, fn) : eachLayer(ctx, fn));
    const layers = await each(async (layer, stats) => {
      const W = readWeight(model, layer);
      const rounded = quantizeMatrix(W, layer.outFeatures, layer.inFeatures, gridSpec(params, params.mse_clip));
      const round = (s: number) => storedScale(s, params.scale_dtype);
      const m = !params.refit_scales ? rounded : params.float_zero_points ? await refitScalesOffsets(W, rounded, undefined, round).then((f) => ({ ...rounded, scales: f.scales, floatZeros: f.floatZeros })) : { ...rounded, scales: (await refitScales(W, rounded, undefined, round)).scales };
      const Wq = dequantizeMatrix(m);
      const err = squaredError(W, Wq);
      const bias = stats ? correctionBias(W, Wq, layer.outFeatures, layer.inFeatures, meanInput(stats, this.id, layer.name), params.scale_dtype) : undefined;
      emitQuantized(model, layer, m, params, bias);
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
