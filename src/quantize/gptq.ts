import { z } from 'zod';
import { UserError } from '../errors.js';
import { readWeight } from '../model/linear-weights.js';
import { obsBlockLoop } from '../obs/block-loop.js';
import { permuteColumns, prepareHessian } from '../obs/hessian.js';
import { reconstructionError } from '../obs/output-error.js';
import { eachCalibratedLayer } from '../pass/layer-loop.js';
import { assertLayersFit, definePass, onValidFields } from '../pass/pass.js';
import { dequantizeMatrix, gridParams, type GridSpec, groupCount, groupLength, quantizeValue, type QuantizedMatrix } from './grid.js';
import { gridSpec, quantizedBytes, prepareOpset, quantizeLayerProblems, WEIGHT_QUANT_FIELDS, weightQuantRules } from './params.js';
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
  })
  .superRefine((p, ctx) => {
    weightQuantRules(p, ctx);
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
  opts: GridSpec & { blockSize: number; staticGroups?: boolean },
): Promise<{ m: QuantizedMatrix; loss: number }> {
  const g = groupLength(opts.granularity, cols);
  const { scales, zeros } = gridParams(W, rows, cols, opts);
  const groups = groupCount(cols, g);
  // the reference's default: a group's grid from the weights as earlier blocks' updates left them
  const dynamic = opts.staticGroups === false && !perm && opts.granularity.kind === 'group';
  const Wp = perm ? permuteColumns(W, rows, cols, perm) : W;
  const codesP = new Uint8Array(rows * cols);
  const { loss } = await obsBlockLoop(Wp, rows, cols, Hinv, opts.blockSize, {
    column(i, w, q) {
      const natural = perm ? perm[i]! : i;
      const k = Math.floor(natural / g);
      if (dynamic && i % g === 0) refitGroup(Wp, rows, cols, i, g, opts, scales, zeros, k, groups);
      for (let r = 0; r < rows; r++) {
        const s = scales[r * groups + k]!;
        const z = zeros[r * groups + k]!;
        const code = quantizeValue(w[r]!, s, z, opts.bits);
        codesP[r * cols + i] = code;
        q[r] = Math.fround((code - z) * s);
      }
    },
  });
  const q = perm ? new Uint8Array(permuteColumns(Float32Array.from(codesP), rows, cols, perm, true)) : codesP;
  return { m: { rows, cols, bits: opts.bits, groupSize: g, symmetric: opts.symmetric, q, scales, zeros }, loss };
}

export const gptq = definePass({
  id: 'quantize.gptq',
  summary: 'GPTQ: weight quantization with Hessian-based error compensation from calibration data (sequential, block by block)',
  params: GptqParams,
  needsCalibration: () => ({ need: 'required' }),
  eligible: (layer) => layer.kind !== 'conv',
  checkLayers(params, layers) {
    return quantizeLayerProblems(this.id, params, layers);
  },
  async apply(model, params: GptqParams, ctx) {
    assertLayersFit(quantizeLayerProblems(this.id, params, ctx.layers));
    prepareOpset(model, this.id, params);
    const spec = gridSpec(params);
    const layers = await eachCalibratedLayer(model, ctx, { hessian: true }, async (layer, s) => {
      const rows = layer.outFeatures;
      const cols = layer.inFeatures;
      const W = readWeight(model, layer);
      const original = W.slice();
      if (s.dim !== cols) throw new UserError(`${this.id}: '${layer.name}' has ${cols} inputs but its activations have ${s.dim} channels`);
      const prepared = await prepareHessian(s, W, rows, { dampening: params.dampening, actOrder: params.act_order, pass: this.id, layer: layer.name });
      const { m, loss } = await gptqQuantize(W, rows, cols, prepared.Hinv, prepared.perm, {
        ...spec,
        mseClip: params.mse_clip,
        clipWeights: params.mse_clip ? inputEnergy(s.xtx!, cols) : undefined,
        blockSize: params.block_size,
        staticGroups: params.static_groups,
      });
      emitQuantized(model, layer, m, params);
      return {
        bytes_before: rows * cols * 4,
        bytes_after: quantizedBytes(rows, cols, params),
        objective: await reconstructionError(original, dequantizeMatrix(m), rows, s),
        extra: { obs_loss: loss, dead_inputs: prepared.dead },
      };
    });
    return { layers, warnings: [] };
  },
  estimateBytes: (layer, params) => quantizedBytes(layer.outFeatures, layer.inFeatures, params),
});
