import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineSpec } from '../../src/pass/pass-spec.js';
import { describePasses } from '../../src/recipe/describe.js';
import { describeType } from '../../src/recipe/zod-shape.js';
import { PASSES } from './test-passes.js';

describe('describePasses', () => {
  it('lists each pass with its params, types, defaults and descriptions', () => {
    expect(describePasses(PASSES)).toEqual([
      {
        id: 'prune.magnitude',
        summary: 'Zero the smallest-magnitude weights of each layer',
        needsCalibration: false,
        params: [
          { name: 'sparsity', type: 'number 0..1', required: true, description: 'fraction of weights set to zero' },
          { name: 'pattern', type: 'unstructured|2:4|4:8', required: false, default: 'unstructured', description: 'sparsity pattern' },
        ],
      },
      {
        id: 'quantize.gptq',
        summary: 'GPTQ weight quantization with Hessian error compensation',
        needsCalibration: true,
        params: [
          { name: 'bits', type: '2|3|4|8', required: false, default: 4, description: 'weight bits' },
          { name: 'group_size', type: 'integer >= 1', required: false, description: 'columns sharing a scale; per-channel when absent' },
          { name: 'dampening', type: 'number > 0, <= 1', required: false, default: 0.01 },
          { name: 'symmetric', type: 'boolean', required: false, default: true },
        ],
      },
      {
        id: 'quantize.rtn',
        summary: 'Round-to-nearest weight quantization',
        needsCalibration: false,
        params: [
          { name: 'bits', type: '4|8', required: false, default: 8 },
          { name: 'scheme', type: 'symmetric|asymmetric', required: false, default: 'symmetric' },
        ],
      },
    ]);
  });

  it('names zod 4 types readably', () => {
    expect(describeType(z.number())).toBe('number');
    expect(describeType(z.number().int().min(0))).toBe('integer >= 0');
    expect(describeType(z.number().int().min(1).max(16))).toBe('integer 1..16');
    expect(describeType(z.number().lt(1))).toBe('number < 1');
    expect(describeType(z.number().nonnegative().optional())).toBe('number >= 0');
    expect(describeType(z.string().nullable())).toBe('string|null');
    expect(describeType(z.array(z.enum(['a', 'b'])))).toBe('list of a|b');
    expect(describeType(z.union([z.number().min(0), z.literal('auto')]))).toBe('number >= 0|auto');
    expect(describeType(z.object({ a: z.number() }))).toBe('mapping');
    expect(describeType(z.string().transform((s) => s.length))).toBe('string');
    expect(describeType(z.number().meta({ typeLabel: 'ratio' }).default(1))).toBe('ratio');
  });

  it('finds descriptions given before or after the default', () => {
    const d = describePasses([
      defineSpec({
        id: 't.x',
        summary: 's',
        needsCalibration: () => ({ need: 'none' }),
        params: z.strictObject({ a: z.number().describe('inner').default(1), b: z.number().default(2).describe('outer') }),
      }),
    ]);
    expect(d[0]!.params.map((p) => [p.description, p.default])).toEqual([
      ['inner', 1],
      ['outer', 2],
    ]);
  });
});
