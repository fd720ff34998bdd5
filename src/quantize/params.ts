import { z } from 'zod';
import type { GridSpec } from './grid.js';

/** Params every weight quantizer shares: the grid and the storage format. */
export const WeightQuantParams = z.object({
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
});
export type WeightQuantParams = z.output<typeof WeightQuantParams>;

export function gridSpec(p: WeightQuantParams, mseClip = false): GridSpec {
  const groupSize = p.granularity === 'tensor' ? -1 : p.granularity === 'channel' ? 0 : p.group_size;
  return { bits: p.bits, groupSize, symmetric: p.symmetric, mseClip };
}

export function formatOf(p: WeightQuantParams): 'qdq' | 'matmulnbits' {
  if (p.format !== 'auto') return p.format;
  return p.bits <= 4 && p.granularity === 'group' ? 'matmulnbits' : 'qdq';
}

/** Stored bytes of a quantized layer: codes plus float32 scales (plus zero points when asymmetric). */
export function quantizedBytes(rows: number, cols: number, p: WeightQuantParams): number {
  const container = formatOf(p) === 'matmulnbits' && p.bits < 8 ? 4 : 8;
  const groups = p.granularity === 'tensor' ? 1 / rows : p.granularity === 'channel' ? 1 : Math.ceil(cols / p.group_size);
  const scaleBytes = Math.ceil(rows * groups) * 4;
  const zeroBytes = p.symmetric ? 0 : Math.ceil((rows * groups * container) / 8);
  return Math.ceil((rows * cols * container) / 8) + scaleBytes + zeroBytes;
}
