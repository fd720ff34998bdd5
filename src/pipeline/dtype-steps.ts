import { UserError } from '../errors.js';
import { DataType } from '../model/dtype.js';
import { attrInt } from '../model/graph.js';
import type { WebDtype } from '../model/hf-folder.js';
import type { Model } from '../model/model.js';
import type { Pass } from '../pass/pass.js';

/**
 * What makes each transformers.js dtype from the run's base model (the recipe's passes done): a
 * list of passes from the registry, by id, with fixed params.
 *
 * | dtype | steps | the file transformers.js loads |
 * | fp32  | none: the base as it is | model.onnx |
 * | fp16  | quantize.f16 (the graph in float16) when registered, else quantize.cast (float16 weights) | model_fp16.onnx |
 * | q8    | quantize.rtn 8-bit per-channel DequantizeLinear (ONNX Runtime fuses it into an 8-bit MatMulNBits) | model_quantized.onnx |
 * | q4    | 4-bit MatMulNBits, symmetric blocks of 32 (the last one shorter where 32 does not divide the inputs), MSE-clipped scales: quantize.gptq when the recipe has calibration, else quantize.rtn | model_q4.onnx |
 * | q4f16 | q4, then quantize.f16 | model_q4f16.onnx |
 *
 * Quantizers take the layers still in float32 that their params fit; the others stay as they are
 * and are named in a warning.
 */

export interface Step {
  pass: string;
  params: Record<string, unknown>;
  /** float: only layers whose weight is still plain float32; all: every layer the pass takes */
  layers: 'float' | 'all';
}

export const Q4_BLOCK = 32;
const F16 = 'quantize.f16';

const q4 = (calibrated: boolean): Step => ({
  pass: calibrated ? 'quantize.gptq' : 'quantize.rtn',
  params: { bits: 4, granularity: 'group', group_size: Q4_BLOCK, symmetric: true, format: 'matmulnbits', mse_clip: true },
  layers: 'float',
});
const f16: Step = { pass: F16, params: {}, layers: 'all' };

export function variantSteps(dtype: WebDtype, calibrated: boolean, passes: readonly Pass[]): Step[] {
  switch (dtype) {
    case 'fp32':
      return [];
    case 'fp16':
      return passes.some((p) => p.id === F16) ? [f16] : [{ pass: 'quantize.cast', params: { dtype: 'float16' }, layers: 'float' }];
    case 'q8':
      return [{ pass: 'quantize.rtn', params: { bits: 8, granularity: 'channel', symmetric: true, format: 'qdq' }, layers: 'float' }];
    case 'q4':
      return [q4(calibrated)];
    case 'q4f16':
      return [q4(calibrated), f16];
  }
}

/** The quantized forms a model holds, read from its ops and initializers. */
export interface Quantization {
  /** linear layers with ≤ 4-bit weights (MatMulNBits, int4 DequantizeLinear) */
  linear4: boolean;
  /** linear layers with 8-bit weights (MatMulNBits 8, int8 DequantizeLinear, MatMulInteger) */
  linear8: boolean;
  /** a block-quantized embedding (GatherBlockQuantized) */
  embeddings: boolean;
  /** 16-bit float initializers */
  half: boolean;
  /** the steps that make `dtype` from this model: the base's own 4- or 8-bit weights are kept; what cannot be made is a user error */
  adapt(dtype: WebDtype, steps: Step[]): Step[];
}

const INT8 = new Set<number>([DataType.INT8, DataType.UINT8]);
const INT4 = new Set<number>([DataType.INT4, DataType.UINT4]);

export function quantizationOf(model: Model): Quantization {
  let linear4 = false;
  let linear8 = false;
  let embeddings = false;
  for (const n of model.graph.node ?? []) {
    const op = n.op_type;
    if (op === 'MatMulNBits') (attrInt(n, 'bits', 4) <= 4 ? (linear4 = true) : (linear8 = true));
    else if (op === 'MatMulInteger' || op === 'DynamicQuantizeLinear') linear8 = true;
    else if (op === 'GatherBlockQuantized') embeddings = true;
    else if (op === 'DequantizeLinear') {
      const t = model.initializer(n.input?.[0] ?? '')?.data_type ?? 0;
      if (INT4.has(t)) linear4 = true;
      else if (INT8.has(t)) linear8 = true;
    }
  }
  const half = (model.graph.initializer ?? []).some((t) => t.data_type === DataType.FLOAT16 || t.data_type === DataType.BFLOAT16);
  const held = [linear4 && '4-bit', linear8 && '8-bit', embeddings && 'quantized embedding', half && '16-bit'].filter(Boolean).join(', ');
  const refuse = (dtype: WebDtype, why: string) => new UserError(`output.dtypes ${dtype}: the model after the recipe's passes holds ${held} weights; ${why}`);
  return {
    linear4,
    linear8,
    embeddings,
    half,
    adapt(dtype, steps) {
      switch (dtype) {
        case 'fp32':
          if (held) throw refuse(dtype, 'a fp32 file must hold float32 weights only: ask for the dtype the recipe makes, or drop its quantizing passes');
          return steps;
        case 'fp16':
          if (linear4 || linear8 || embeddings) throw refuse(dtype, 'a fp16 file holds 16-bit floats, not integers: ask for q4, q8 or q4f16');
          return half && !steps.some((s) => s.pass === F16) ? [] : steps;
        case 'q8':
          if (linear4) throw refuse(dtype, 'requantizing 4-bit weights to 8 bits cannot bring back what was lost: ask for q4 or q4f16');
          return linear8 ? [] : steps;
        case 'q4':
        case 'q4f16':
          if (linear8) throw refuse(dtype, 'requantizing 8-bit weights to 4 bits stacks two roundings: ask for q8, or quantize to 4 bits in the recipe');
          return linear4 ? steps.filter((s) => s.pass === F16) : steps;
      }
    },
  };
}
