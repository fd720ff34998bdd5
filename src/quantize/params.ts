import { z } from 'zod';
import { attrFloat } from '../model/graph.js';
import type { LinearLayer } from '../model/linears.js';
import type { LayerProblem } from '../pass/pass.js';
import { UserError } from '../errors.js';
import type { Model } from '../model/model.js';
import { upgradeOpset } from '../model/opset-upgrade.js';
import { biasBytes } from './bias-correction.js';
import { BLOCKED_DQ_OPSET, matMulNBitsContainer } from './emit.js';
import type { Granularity, GridSpec } from './grid.js';

/** Params every weight quantizer shares: the grid and the storage format. */
export const WEIGHT_QUANT_FIELDS = {
  bits: z.union([z.literal(2), z.literal(3), z.literal(4), z.literal(8)]).default(8).describe('bits per weight (MatMulNBits stores 3 in a 4-bit container; DequantizeLinear 2 and 3 in 4-bit (per group) or 8-bit containers)'),
  granularity: z.enum(['tensor', 'channel', 'group']).default('channel').describe('one scale per tensor, per output channel, or per group of inputs'),
  group_size: z.number().int().min(8).default(128).describe('inputs per group when granularity is group'),
  symmetric: z.boolean().default(true).describe('symmetric grid (zero point fixed at the middle) or asymmetric (min..max)'),
  format: z
    .enum(['auto', 'qdq', 'matmulnbits'])
    .default('auto')
    .describe('qdq: DequantizeLinear feeding the layer (per tensor/channel: codes in an 8-bit container; per group: blocked DequantizeLinear, opset 21, int4/uint4 codes for ≤ 4 bits); matmulnbits: com.microsoft MatMulNBits with per-group scales, 8-bit or packed ≤ 4-bit; auto: matmulnbits for ≤ 4-bit groups, qdq otherwise'),
  opset: z.literal(BLOCKED_DQ_OPSET).optional().describe(`raise the model's ONNX opset to ${BLOCKED_DQ_OPSET} first (Reduce ops rewritten to match), as format qdq with groups needs`),
  accuracy_level: z
    .union([z.literal(0), z.literal(1), z.literal(2), z.literal(3), z.literal(4)])
    .default(0)
    .describe('MatMulNBits compute type: 0 float32 (outputs equal the dequantized model), 4 int8 activations (faster on CPU)'),
  scale_dtype: z
    .enum(['float32', 'float16'])
    .optional()
    .describe('(default float32) MatMulNBits scales stored as float16 behind a Cast to float (ONNX Runtime folds it at load); codes are chosen against the float16-rounded scales'),
  packed_3bit: z
    .boolean()
    .optional()
    .describe('(default false) 3-bit MatMulNBits codes stored 8 per 3 bytes, rebuilt into the 4-bit container at load by a constant subgraph ONNX Runtime folds'),
  float_zero_points: z
    .boolean()
    .optional()
    .describe('(default false) asymmetric MatMulNBits zero points stored as floats in the scales\' type (4 bytes a group, 2 with float16 scales) instead of packed integers; with refit_scales, each group\'s scale and zero point are refitted jointly by least squares'),
};
export const WeightQuantParams = z.strictObject(WEIGHT_QUANT_FIELDS);
export type WeightQuantParams = z.output<typeof WeightQuantParams>;

/** The cross-field rules of the shared params (superRefine of each quantizer's schema). */
export function weightQuantRules(p: WeightQuantParams, ctx: z.RefinementCtx): void {
  if (p.scale_dtype === 'float16' && formatOf(p) !== 'matmulnbits') {
    ctx.addIssue({ code: 'custom', path: ['scale_dtype'], message: 'scale_dtype float16 is for format matmulnbits (its scales sit behind a Cast); use granularity: group with format: matmulnbits (or auto at ≤ 4 bits), or leave scale_dtype out' });
  }
  if (p.packed_3bit && (p.bits !== 3 || formatOf(p) !== 'matmulnbits')) {
    ctx.addIssue({ code: 'custom', path: ['packed_3bit'], message: `packed_3bit stores 3-bit MatMulNBits codes; got bits ${p.bits} with format ${formatOf(p)} (set bits: 3, format: matmulnbits, or leave packed_3bit out)` });
  }
  if (p.float_zero_points && (p.symmetric || formatOf(p) !== 'matmulnbits')) {
    ctx.addIssue({ code: 'custom', path: ['float_zero_points'], message: `float_zero_points stores asymmetric MatMulNBits zero points; got symmetric ${p.symmetric} with format ${formatOf(p)} (set symmetric: false, format: matmulnbits, or leave float_zero_points out)` });
  }
  if (formatOf(p) !== 'matmulnbits') return;
  if (p.granularity !== 'group') {
    ctx.addIssue({ code: 'custom', path: ['format'], message: 'format matmulnbits stores per-block scales; set granularity: group with group_size 16..256' });
  } else if (p.group_size < 16 || p.group_size > 256 || (p.group_size & (p.group_size - 1)) !== 0) {
    ctx.addIssue({ code: 'custom', path: ['group_size'], message: `format matmulnbits (MatMulNBits) needs a power of two from 16 to 256, got ${p.group_size}` });
  }
}

export function granularityOf(p: WeightQuantParams): Granularity {
  return p.granularity === 'group' ? { kind: 'group', size: p.group_size } : { kind: p.granularity };
}

export function gridSpec(p: WeightQuantParams, mseClip = false): GridSpec {
  return { bits: p.bits, granularity: granularityOf(p), symmetric: p.symmetric, mseClip, scaleDtype: p.scale_dtype };
}

export function formatOf(p: WeightQuantParams): 'qdq' | 'matmulnbits' {
  if (p.format !== 'auto') return p.format;
  return p.bits <= 4 && p.granularity === 'group' ? 'matmulnbits' : 'qdq';
}

/** The layers' own rules: each storage format takes only some layers. A group size that does not divide the inputs leaves a shorter last group. */
export function quantizeLayerProblems(pass: string, p: WeightQuantParams, layers: readonly LinearLayer[]): LayerProblem[] {
  const problems: LayerProblem[] = [];
  const format = formatOf(p);
  for (const layer of layers) {
    if (format === 'qdq' && p.granularity === 'group' && layer.kind === 'conv') {
      problems.push({ param: 'granularity', message: `${pass}: '${layer.name}' is a conv; per-group scales cover MatMul and Gemm weights only, use granularity: channel or leave it out of targets` });
    }
    if (format === 'matmulnbits' && layer.kind === 'conv') {
      problems.push({ param: 'format', message: `${pass}: '${layer.name}' is a conv; format matmulnbits rewrites MatMul and Gemm only, use format: qdq (8-bit) or leave it out of targets` });
    }
    if (format === 'matmulnbits' && layer.kind === 'gemm' && attrFloat(layer.node, 'alpha', 1) !== 1) {
      problems.push({ param: 'format', message: `${pass}: Gemm '${layer.name}' has alpha ${attrFloat(layer.node, 'alpha', 1)}; MatMulNBits has no output scale (use format: qdq)` });
    }
  }
  return problems;
}

/** Raise the model's opset when the params ask; refuse per-group DequantizeLinear on an older model that they don't. */
export function prepareOpset(model: Model, pass: string, p: WeightQuantParams): void {
  if (p.opset !== undefined && model.opset() < p.opset) upgradeOpset(model, p.opset);
  if (formatOf(p) === 'qdq' && p.granularity === 'group' && model.opset() < BLOCKED_DQ_OPSET) {
    throw new UserError(`${pass}: format qdq with granularity group needs blocked DequantizeLinear (ONNX opset ${BLOCKED_DQ_OPSET}) and ${model.path} imports opset ${model.opset()}; add opset: ${BLOCKED_DQ_OPSET} to the pass's params or use format: matmulnbits`);
  }
}

/**
 * Stored bytes of a quantized layer: codes (MatMulNBits pads the last block) plus float32 (or
 * float16) scales (plus zero points when asymmetric: packed integers, or floats of the scales' type),
 plus a bias_correction's output bias. Bits per weight everywhere is these bytes · 8 over rows · cols.
 */
export function quantizedBytes(rows: number, cols: number, p: WeightQuantParams & { bias_correction?: boolean }): number {
  const format = formatOf(p);
  const container = format === 'matmulnbits' ? matMulNBitsContainer(p.bits) : p.bits < 8 && p.granularity === 'group' ? 4 : 8;
  const codeBits = format === 'matmulnbits' && p.bits === 3 && p.packed_3bit ? 3 : container;
  const groups = p.granularity === 'tensor' ? 1 / rows : p.granularity === 'channel' ? 1 : Math.ceil(cols / p.group_size);
  const storedCols = format === 'matmulnbits' ? Math.ceil(cols / p.group_size) * p.group_size : cols;
  const scaleBytes = Math.ceil(rows * groups) * (p.scale_dtype === 'float16' ? 2 : 4);
  const zeroBytes = p.symmetric ? 0 : p.float_zero_points ? scaleBytes : format === 'matmulnbits' ? rows * Math.ceil((groups * container) / 8) : Math.ceil((rows * groups * container) / 8);
  return Math.ceil((rows * storedCols * codeBits) / 8) + scaleBytes + zeroBytes + (p.bias_correction ? biasBytes(rows, p.scale_dtype) : 0);
}
