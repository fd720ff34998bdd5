import { z } from 'zod';
import { attrFloat } from '../model/graph.js';
import type { LinearLayer } from '../model/linears.js';
import type { LayerProblem } from '../pass/pass.js';
import type { Granularity, GridSpec } from './grid.js';

/** Params every weight quantizer shares: the grid and the storage format. */
export const WEIGHT_QUANT_FIELDS = {
  bits: z.union([z.literal(2), z.literal(3), z.literal(4), z.literal(8)]).default(8).describe('bits per weight (2 and 3 are stored in a 4-bit container)'),
  granularity: z.enum(['tensor', 'channel', 'group']).default('channel').describe('one scale per tensor, per output channel, or per group of inputs'),
  group_size: z.number().int().min(8).default(128).describe('inputs per group when granularity is group'),
  symmetric: z.boolean().default(true).describe('symmetric grid (zero point fixed at the middle) or asymmetric (min..max)'),
  format: z
    .enum(['auto', 'qdq', 'matmulnbits'])
    .default('auto')
    .describe('qdq: DequantizeLinear feeding the layer (codes in an 8-bit container); matmulnbits: com.microsoft MatMulNBits with per-group scales, 8-bit or packed ≤ 4-bit; auto: matmulnbits for ≤ 4-bit groups, qdq otherwise'),
  accuracy_level: z
    .union([z.literal(0), z.literal(1), z.literal(2), z.literal(3), z.literal(4)])
    .default(0)
    .describe('MatMulNBits compute type: 0 float32 (outputs equal the dequantized model), 4 int8 activations (faster on CPU)'),
};
export const WeightQuantParams = z.strictObject(WEIGHT_QUANT_FIELDS);
export type WeightQuantParams = z.output<typeof WeightQuantParams>;

/** The cross-field rules of the shared params (superRefine of each quantizer's schema). */
export function weightQuantRules(p: WeightQuantParams, ctx: z.RefinementCtx): void {
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
  return { bits: p.bits, granularity: granularityOf(p), symmetric: p.symmetric, mseClip };
}

export function formatOf(p: WeightQuantParams): 'qdq' | 'matmulnbits' {
  if (p.format !== 'auto') return p.format;
  return p.bits <= 4 && p.granularity === 'group' ? 'matmulnbits' : 'qdq';
}

/** The layers' own rules: groups must tile the inputs, and each storage format takes only some layers. */
export function quantizeLayerProblems(pass: string, p: WeightQuantParams, layers: readonly LinearLayer[]): LayerProblem[] {
  const problems: LayerProblem[] = [];
  const format = formatOf(p);
  for (const layer of layers) {
    const n = layer.inFeatures;
    if (p.granularity === 'group' && n % p.group_size !== 0) {
      problems.push({ param: 'group_size', message: `${pass}: '${layer.name}' has ${n} inputs, not a multiple of group_size ${p.group_size}; pick a divisor or add it to ignore:` });
    } else if (format === 'qdq' && p.granularity === 'group' && n !== p.group_size) {
      problems.push({ param: 'granularity', message: `${pass}: '${layer.name}': format qdq stores one scale per output channel, not per group of ${p.group_size} of its ${n} inputs; use format: matmulnbits or granularity: channel` });
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

/** Stored bytes of a quantized layer: codes plus float32 scales (plus zero points when asymmetric). */
export function quantizedBytes(rows: number, cols: number, p: WeightQuantParams): number {
  const container = formatOf(p) === 'matmulnbits' && p.bits < 8 ? 4 : 8;
  const groups = p.granularity === 'tensor' ? 1 / rows : p.granularity === 'channel' ? 1 : Math.ceil(cols / p.group_size);
  const scaleBytes = Math.ceil(rows * groups) * 4;
  const zeroBytes = p.symmetric ? 0 : Math.ceil((rows * groups * container) / 8);
  return Math.ceil((rows * cols * container) / 8) + scaleBytes + zeroBytes;
}
