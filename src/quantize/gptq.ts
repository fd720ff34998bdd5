import { z } from 'zod';
import { UserError } from '../errors.js';
import { readWeight } from '../model/linear-weights.js';
import { obsBlockLoop } from '../obs/block-loop.js';
import { permuteColumns, prepareHessian } from '../obs/hessian.js';
import { reconstructionError } from '../obs/output-error.js';
import { eachCalibratedLayer } from '../pass/layer-loop.js';
import { assertLayersFit, definePass, onValidFields } from '../pass/pass.js';
import { dequantizeMatrix, gridParams, type GridSpec, groupCount, groupLength, quantizeValue, quantizeValueFloatZero, type QuantizedMatrix, storedScale } from './grid.js';
import { gridSpec, quantizedBytes, prepareOpset, quantizeLayerProblems, WEIGHT_QUANT_FIELDS, weightQuantRules } from './params.js';
import { biasCorrection, biasCorrectionProblems, BIAS_CORRECTION_FIELD, centeredStats } from './bias-correction.js';
import { refitScales } from './refit.js';
import { refitScalesOffsets } from './refit-offset.js';
import { emitQuantized } from './rtn.js';

/**
 * GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
 * Pre-trained Transformers"): quantize W column by column, each column's rounding error
 * compensated on the not-yet-quantized columns through the inverse Hessian of the layer's
 * calibration inputs (the shared OBS block loop). Grid parameters per output row (per channel) or
 * per group of inputs are fixed from W before the loop (the reference's static_groups), so
 * act_order needs no g_idx and the result stores like RTN.
 */

const GptqParams = z
  .strictObject({
    ...WEIGHT_QUANT_FIELDS,
    dampening: z.number().min(0).max(1).default(0.01).describe('λ: H += λ·mean(diag H)·I'),
    block_size: z.number().int().min(1).default(128).describe('columns per lazy-update block'),
    act_order: z.boolean().default(false).describe('quantize inputs in order of decreasing Hessian diagonal (groups keep their static scales, so the result stores as MatMulNBits without g_idx)'),
    static_groups: z.boolean().default(true).describe('fix every group\'s grid from W before the loop (needed with act_order); false refits each group when the loop reaches it, from the weights earlier blocks\' updates left (the reference\'s default)'),
    mse_clip: z.boolean().default(false).describe('per group/channel, search a shrunken range (factors 1 … 0.21) for the lowest Hessian-diagonal-weighted rounding error before the column loop'),
    refit_scales: z.boolean().default(false).describe('after the loop, refit each row\'s group scales to the codes by least squares on the layer-output error (XᵀX, the original weights); zero points stay integer unless float_zero_points, which refits them jointly'),
    refit_rounds: z.number().int().min(1).max(8).default(1).describe('with refit_scales: rounds of refit; each round after the first re-runs the loop on the refitted grid first'),
    ...BIAS_CORRECTION_FIELD,
    center_hessian: z.boolean().optional().describe('(default false) with bias_correction: run GPTQ, its clipping search and refit on the centred XᵀX − n·μμᵀ, the error the bias leaves'),
  })
  .superRefine((p, ctx) => {
    weightQuantRules(p, ctx);
    if (p.refit_scales && p.granularity === 'tensor') ctx.addIssue({ code: 'custom', path: ['refit_scales'], message: 'refit_scales fits one scale per row or group; use granularity: channel or group' });
    if (p.center_hessian && !p.bias_correction) ctx.addIssue({ code: 'custom', path: ['center_hessian'], message: 'center_hessian minimises the error left after the bias correction; set bias_correction: true' });
    if (p.act_order && !p.static_groups) ctx.addIssue({ code: 'custom', path: ['static_groups'], message: 'act_order needs static_groups: true (groups refitted in act order would need g_idx, which MatMulNBits storage does not carry)' });
  }, onValidFields);
type GptqParams = z.output<typeof GptqParams>;

/** diag(XᵀX): how much each input's rounding error weighs in the layer's output error. */
function inputEnergy(xtx: Float64Array, cols: number): Float32Array {
  return Float32Array.from({ length: cols }, (_, j) => xtx[j * cols + j]!);
}

/** The grid of group k (columns [c0, c0 + g)) from W as it is now, into scales/zeros. */
function refitGroup(W: Float32Array, rows: number, cols: number, c0: number, g: number, spec: GridSpec, scales: Float32Array, zeros: Uint8Array, k: number, groups: number): void {
  const len = Math.min(g, cols - c0);
  const sub = new Float32Array(rows * len);
  for (let r = 0; r < rows; r++) sub.set(W.subarray(r * cols + c0, r * cols + c0 + len), r * len);
  const p = gridParams(sub, rows, len, { ...spec, granularity: { kind: 'group', size: len }, clipWeights: spec.clipWeights?.subarray(c0, c0 + len) });
  for (let r = 0; r < rows; r++) {
    scales[r * groups + k] = p.scales[r]!;
    zeros[r * groups + k] = p.zeros[r]!;
  }
}

/** GPTQ on one layer: returns the quantized matrix (natural column order) and the OBS loss. */
export async function gptqQuantize(
  W: Float32Array,
  rows: number,
  cols: number,
  Hinv: Float64Array,
  perm: Int32Array | undefined,
  opts: GridSpec & { blockSize: number; staticGroups?: boolean; grid?: { scales: Float32Array; zeros: Uint8Array; floatZeros?: Float32Array } },
): Promise<{ m: QuantizedMatrix; loss: number }> {
  const g = groupLength(opts.granularity, cols);
  const { scales, zeros } = opts.grid ? { scales: opts.grid.scales.slice(), zeros: opts.grid.zeros.slice() } : gridParams(W, rows, cols, opts);
  const groups = groupCount(cols, g);
  const floatZeros = opts.grid?.floatZeros;
  // the reference's default: a group's grid from the weights as earlier blocks' updates left them
  const dynamic = opts.staticGroups === false && !perm && !opts.grid && opts.granularity.kind === 'group';
  const Wp = perm ? permuteColumns(W, rows, cols, perm) : W;
  const codesP = new Uint8Array(rows * cols);
  const { loss } = await obsBlockLoop(Wp, rows, cols, Hinv, opts.blockSize, {
    column(i, w, q) {
      const natural = perm ? perm[i]! : i;
      const k = Math.floor(natural / g);
      if (dynamic && i % g === 0) refitGroup(Wp, rows, cols, i, g, opts, scales, zeros, k, groups);
      for (let r = 0; r < rows; r++) {
        const s = scales[r * groups + k]!;
        if (floatZeros) {
          const z = floatZeros[r * groups + k]!;
          const code = quantizeValueFloatZero(w[r]!, s, z, opts.bits);
          codesP[r * cols + i] = code;
          q[r] = Math.fround(Math.fround(code - z) * s);
          continue;
        }
        const z = zeros[r * groups + k]!;
        const code = quantizeValue(w[r]!, s, z, opts.bits);
        codesP[r * cols + i] = code;
        q[r] = Math.fround((code - z) * s);
      }
    },
  });
  const q = perm ? new Uint8Array(permuteColumns(Float32Array.from(codesP), rows, cols, perm, true)) : codesP;
  return { m: { rows, cols, bits: opts.bits, groupSize: g, symmetric: opts.symmetric, q, scales, zeros, ...(floatZeros ? { floatZeros: floatZeros.slice() } : {}) }, loss };
}

/**
 * GPTQ, then `rounds` of scale refit (refit.ts; with `floatZeros`, scale and zero point jointly,
 * refit-offset.ts) against the original weights `W0` and XᵀX: each round after the first re-runs
 * GPTQ from `W` on the refitted grid, so the codes follow the new scales. W is not modified; the
 * result is the round with the lowest output error.
 */
export async function gptqRefit(
  W0: Float32Array,
  W: Float32Array,
  rows: number,
  cols: number,
  prepared: { Hinv: Float64Array; perm?: Int32Array },
  xtx: Float64Array,
  opts: Parameters<typeof gptqQuantize>[5] & { rounds: number; floatZeros?: boolean },
): Promise<{ m: QuantizedMatrix; loss: number; refit: { before: number; after: number } }> {
  let { m, loss } = await gptqQuantize(W.slice(), rows, cols, prepared.Hinv, prepared.perm, opts);
  const stored = (s: number) => storedScale(s, opts.scaleDtype);
  const fit = async (q: QuantizedMatrix): Promise<{ scales: Float32Array; floatZeros?: Float32Array; before: number; after: number }> => (opts.floatZeros ? refitScalesOffsets(W0, q, xtx, stored) : refitScales(W0, q, xtx, stored));
  const first = await fit(m);
  const refit = { before: first.before, after: first.after };
  m = { ...m, scales: first.scales, ...(first.floatZeros ? { floatZeros: first.floatZeros } : {}) };
  for (let k = 1; k < opts.rounds; k++) {
    const next = await gptqQuantize(W.slice(), rows, cols, prepared.Hinv, prepared.perm, { ...opts, grid: { scales: m.scales, zeros: m.zeros, floatZeros: m.floatZeros } });
    const r = await fit(next.m);
    if (r.after >= refit.after) break;
    refit.after = r.after;
    m = { ...next.m, scales: r.scales, ...(r.floatZeros ? { floatZeros: r.floatZeros } : {}) };
    loss = next.loss;
  }
  return { m, loss, refit };
}

export const gptq = definePass({
  id: 'quantize.gptq',
  summary: 'GPTQ: weight quantization with Hessian-based error compensation from calibration data (sequential, block by block)',
  params: GptqParams,
  needsCalibration: () => ({ need: 'required' }),
  eligible: (layer) => layer.kind !== 'conv',
  checkLayers(params, layers) {
    return [...quantizeLayerProblems(this.id, params, layers), ...(params.bias_correction ? biasCorrectionProblems(this.id, layers) : [])];
  },
  async apply(model, params: GptqParams, ctx) {
    assertLayersFit(this.checkLayers!(params, ctx.layers));
    prepareOpset(model, this.id, params);
    const spec = gridSpec(params);
    const layers = await eachCalibratedLayer(model, ctx, { hessian: true, sum: params.bias_correction }, async (layer, s) => {
      const rows = layer.outFeatures;
      const cols = layer.inFeatures;
      if (s.dim !== cols) throw new UserError(`${this.id}: '${layer.name}' has ${cols} inputs but its activations have ${s.dim} channels`);
      const W = readWeight(model, layer);
      const original = W.slice();
      // with center_hessian the solve sees the centred statistics; the reported error uses s itself
      const h = params.center_hessian ? centeredStats(s, this.id, layer.name) : s;
      const prepared = await prepareHessian(h, W, rows, { dampening: params.dampening, actOrder: params.act_order, pass: this.id, layer: layer.name });
      const opts = {
        ...spec,
        mseClip: params.mse_clip,
        clipWeights: params.mse_clip ? inputEnergy(h.xtx!, cols) : undefined,
        blockSize: params.block_size,
        staticGroups: params.static_groups,
      };
      const { m, loss, refit } = params.refit_scales
        ? await gptqRefit(original, W, rows, cols, prepared, h.xtx!, { ...opts, rounds: params.refit_rounds, floatZeros: params.float_zero_points })
        : { ...(await gptqQuantize(W, rows, cols, prepared.Hinv, prepared.perm, opts)), refit: undefined };
      const Wq = dequantizeMatrix(m);
      const error = await reconstructionError(original, Wq, rows, s);
      const corrected = params.bias_correction ? biasCorrection(original, Wq, rows, cols, s, error, { pass: this.id, layer: layer.name, dtype: params.scale_dtype }) : undefined;
      emitQuantized(model, layer, m, params, corrected?.bias);
      return {
        bytes_before: rows * cols * 4,
        bytes_after: quantizedBytes(rows, cols, params),
        objective: corrected?.error ?? error,
        extra: { obs_loss: loss, dead_inputs: prepared.dead, ...(refit ? { refit_error_ratio: refit.after / Math.max(refit.before, 1e-300) } : {}), ...(corrected ? { error_before_bias_correction: error } : {}) },
      };
    });
    return { layers, warnings: [] };
  },
  estimateBytes: (layer, params) => quantizedBytes(layer.outFeatures, layer.inFeatures, params),
});
