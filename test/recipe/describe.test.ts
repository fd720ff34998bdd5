import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineSpec } from '../../src/pass/pass-spec.js';
import { describePasses } from '../../src/recipe/describe.js';
import { describeType } from '../../src/recipe/zod-shape.js';
import { PASSES } from '../../src/pipeline/registry.js';

describe('describePasses', () => {
  const described = describePasses(PASSES);

  it('lists every registered pass, in registry order, with each field of its params schema', () => {
    expect(described.map((d) => [d.id, d.summary])).toEqual(PASSES.map((p) => [p.id, p.summary]));
    for (const [i, d] of described.entries()) expect(d.params.map((x) => x.name), d.id).toEqual(Object.keys(PASSES[i]!.params.shape));
    expect(described.find((d) => d.id === 'quantize.gptq')!.needsCalibration).toBe(true);
    expect(described.find((d) => d.id === 'prune.magnitude')!.needsCalibration).toBe(false);
  });

  it('a param is required exactly when its schema rejects a missing value, and its default is what the schema fills in', () => {
    for (const [i, d] of described.entries()) {
      const shape = PASSES[i]!.params.shape as Record<string, z.ZodType>;
      for (const param of d.params) {
        const missing = shape[param.name]!.safeParse(undefined);
        expect(param.required, `${d.id}.${param.name}`).toBe(!missing.success);
        if ('default' in param) expect(missing.data, `${d.id}.${param.name}`).toEqual(param.default);
      }
    }
  });

  it('names types, defaults and descriptions as `pare recipe passes` prints them', () => {
    const param = (id: string, name: string) => described.find((d) => d.id === id)!.params.find((p) => p.name === name);
    expect(param('quantize.rtn', 'bits')).toMatchObject({ type: '2|3|4|8', required: false, default: 8, description: expect.stringMatching(/bits per weight/) });
    expect(param('quantize.rtn', 'granularity')).toMatchObject({ type: 'tensor|channel|group', default: 'channel' });
    expect(param('prune.magnitude', 'sparsity')).toMatchObject({ type: 'number 0..1', default: 0.5 });
    expect(param('prune.layers', 'blocks')).toMatchObject({ type: 'list of integer >= 0', required: false });
    expect(param('prune.layers', 'blocks')).not.toHaveProperty('default');
    expect(param('decompose.svd', 'rank')).toMatchObject({ type: 'integer >= 1', required: false });
    expect(param('distill.kd', 'data')!.type).toMatch(/^teacher\|calibration\|mapping with kind: text\|tokens/);
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
