import { z } from 'zod';
import type { PassSpec } from '../../src/pass/pass-spec.js';

/** Test-only pass specs shaped like the real ones. */

export const magnitude: PassSpec = {
  id: 'prune.magnitude',
  summary: 'Zero the smallest-magnitude weights of each layer',
  needsCalibration: false,
  params: z
    .object({
      sparsity: z.number().min(0).max(1).describe('fraction of weights set to zero'),
      pattern: z.enum(['unstructured', '2:4', '4:8']).default('unstructured').describe('sparsity pattern'),
    })
    .strict(),
};

export const gptq: PassSpec = {
  id: 'quantize.gptq',
  summary: 'GPTQ weight quantization with Hessian error compensation',
  needsCalibration: true,
  params: z
    .object({
      bits: z.literal([2, 3, 4, 8]).default(4).describe('weight bits'),
      group_size: z.number().int().positive().optional().describe('columns sharing a scale; per-channel when absent'),
      dampening: z.number().positive().max(1).default(0.01),
      symmetric: z.boolean().default(true),
    })
    .strict(),
};

export const rtn: PassSpec = {
  id: 'quantize.rtn',
  summary: 'Round-to-nearest weight quantization',
  needsCalibration: false,
  params: z
    .object({
      bits: z.union([z.literal(4), z.literal(8)]).default(8),
      scheme: z.union([z.literal('symmetric'), z.literal('asymmetric')]).default('symmetric'),
    })
    .strict(),
};

export const PASSES: readonly PassSpec[] = [magnitude, gptq, rtn];
