import { z } from 'zod';
import { defineSpec, type PassSpec } from '../../src/pass/pass-spec.js';

/** Test-only pass specs shaped like the real ones. */

export const magnitude = defineSpec({
  id: 'prune.magnitude',
  summary: 'Zero the smallest-magnitude weights of each layer',
  needsCalibration: () => ({ need: 'none' }),
  params: z
    .object({
      sparsity: z.number().min(0).max(1).describe('fraction of weights set to zero'),
      pattern: z.enum(['unstructured', '2:4', '4:8']).default('unstructured').describe('sparsity pattern'),
    })
    .strict(),
});

export const gptq = defineSpec({
  id: 'quantize.gptq',
  summary: 'GPTQ weight quantization with Hessian error compensation',
  needsCalibration: () => ({ need: 'required' }),
  params: z
    .object({
      bits: z.literal([2, 3, 4, 8]).default(4).describe('weight bits'),
      group_size: z.number().int().positive().optional().describe('columns sharing a scale; per-channel when absent'),
      dampening: z.number().positive().max(1).default(0.01),
      symmetric: z.boolean().default(true),
    })
    .strict(),
});

export const rtn = defineSpec({
  id: 'quantize.rtn',
  summary: 'Round-to-nearest weight quantization',
  needsCalibration: () => ({ need: 'none' }),
  params: z
    .object({
      bits: z.union([z.literal(4), z.literal(8)]).default(8),
      scheme: z.union([z.literal('symmetric'), z.literal('asymmetric')]).default('symmetric'),
    })
    .strict(),
});

export const PASSES: readonly PassSpec[] = [magnitude, gptq, rtn];
