import { mkdtempSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { loadRecipe, parseRecipe } from '../../src/recipe/parse.js';
import { PASSES } from '../../src/pipeline/registry.js';
import { recipeError } from './recipe-error.js';


const VALID = `version: 1
calibration:
  data: { kind: tokens, path: calib.bin, seq_len: 128 }
  samples: 64
passes:
  - pass: prune.magnitude
    targets: ["model.layers.*.mlp.*", "re:.*attn.*"]
    ignore: [lm_head]
    params: { sparsity: 0.5 }
  - pass: quantize.gptq
eval:
  data: { kind: text, path: wiki.txt, tokenizer: tokenizer.json }
  latency: { runs: 5 }
  budgets: { max_ppl_increase: "2%", max_accuracy_drop: 0.5, max_size_increase: "0%" }
`;

describe('parseRecipe', () => {
  it('a valid recipe parses with every default filled', () => {
    const r = parseRecipe(VALID, 'recipe.yaml', PASSES);
    expect(r.version).toBe(1);
    expect(r.calibration).toEqual({
      data: { kind: 'tokens', path: 'calib.bin', seq_len: 128, dtype: 'uint16', offset: 0 },
      samples: 64,
      mode: 'sequential',
      hessian_precision: 'float32',
    });
    expect(r.passes.map((p) => p.parsed.calibration.need)).toEqual(['none', 'required']);
    expect(r.passes.map(({ parsed: _, ...entry }) => entry)).toEqual([
      {
        pass: 'prune.magnitude',
        targets: ['model.layers.*.mlp.*', 're:.*attn.*'],
        ignore: ['lm_head'],
        params: { sparsity: 0.5, pattern: 'unstructured', scope: 'layer' },
      },
      {
        pass: 'quantize.gptq',
        targets: ['*'],
        ignore: [],
        params: { bits: 8, granularity: 'channel', group_size: 128, symmetric: true, format: 'auto', accuracy_level: 0, dampening: 0.01, block_size: 128, act_order: false, static_groups: true, mse_clip: false, refit_scales: false, refit_rounds: 1 },
      },
    ]);
    expect(r.eval?.reference).toBe(true);
    expect(r.eval?.data).toMatchObject({ kind: 'text', separator: '<|endoftext|>', bos: true, max_length: 512 });
    expect(r.eval?.latency).toEqual({ runs: 5, warmup: 3, threads: 1 });
    expect(r.eval?.budgets).toEqual({
      max_ppl_increase: { kind: 'relative', fraction: 0.02 },
      max_accuracy_drop: { kind: 'absolute', value: 0.5 },
      max_size_increase: { kind: 'relative', fraction: 0 },
    });
    expect(r.output).toEqual({ external_data: false });
  });

  it('reports an unknown key, a bad enum and missing calibration together, each at its line:col', () => {
    const text = [
      'version: 1',
      'passes:',
      '  - pass: prune.magnitude',
      '    params:',
      '      sparsity: 0.5',
      '      patern: 2:4',
      '  - pass: quantize.gptq',
      '    params: { bits: 5 }',
      '',
    ].join('\n');
    const e = recipeError(text);
    expect(e).toBeInstanceOf(UserError);
    expect(e.exitCode).toBe(2);
    expect(e.errors).toEqual([
      {
        path: 'passes[0].params.patern',
        line: 6,
        col: 7,
        message: 'unknown key; known keys: sparsity, pattern, scope (did you mean "pattern"?)',
      },
      {
        path: 'passes[1].pass',
        line: 7,
        col: 11,
        message:
          'quantize.gptq needs calibration data, but the recipe has no calibration section; add calibration: { data: {...}, samples: 128 }',
      },
      { path: 'passes[1].params.bits', line: 8, col: 21, message: 'expected 2|3|4|8, got 5' },
    ]);
    const lines = e.message.split('\n');
    expect(lines[0]).toBe('recipe.yaml: 3 errors');
    expect(lines[3]).toBe('recipe.yaml:8:21 passes[1].params.bits: expected 2|3|4|8, got 5');
    expect(lines).toHaveLength(4);
  });

  it('reports schema errors in every section at once', () => {
    const text = [
      'version: 2', // 1
      'calibration:', // 2
      '  samples: 0', // 3
      'passes:', // 4
      '  - pass: quantize.rtn', // 5
      '    targets: ["re:model.(", "*"]', // 6
      '    params: { bits: 5, granularity: row }', // 7
      'eval:', // 8
      '  data: { kind: csv, path: x }', // 9
      '  latency: { runs: 0 }', // 10
      '  budgets: { max_ppl_increase: "2 percent" }', // 11
      'output: { external: true }', // 12
      '',
    ].join('\n');
    const e = recipeError(text);
    expect(e.errors.map((x) => `${x.line}:${x.col} ${x.path}: ${x.message}`)).toEqual([
      '1:10 version: expected 1, got 2',
      '2:1 calibration.data: missing required key (expected mapping with kind: text|tokens|idx|images|npy|image-folder|random|wav-folder)',
      '3:12 calibration.samples: expected integer >= 1, got 0',
      '6:15 passes[0].targets[0]: invalid regular expression "re:model.(": Unterminated group',
      '7:21 passes[0].params.bits: expected 2|3|4|8, got 5',
      '7:37 passes[0].params.granularity: expected tensor|channel|group, got "row"',
      '9:17 eval.data.kind: expected text|tokens|idx|images|npy|image-folder|random|wav-folder, got "csv"',
      '10:20 eval.latency.runs: expected integer >= 1, got 0',
      '11:32 eval.budgets.max_ppl_increase: expected percentage like "2%" or number >= 0, got "2 percent"',
      '12:11 output.external: unknown key; known keys: external_data, dtypes, opset',
    ]);
  });

  it('points a missing top-level key at the document start and a missing nested key at its parent', () => {
    const e = recipeError('passes:\n  - pass: prune.magnitude\ncalibration:\n  samples: 8\n');
    expect(e.errors).toEqual([
      { path: 'version', line: 1, col: 1, message: 'missing required key (expected 1)' },
      { path: 'calibration.data', line: 3, col: 1, message: 'missing required key (expected mapping with kind: text|tokens|idx|images|npy|image-folder|random|wav-folder)' },
    ]);
  });

  it('reports a YAML syntax error with its line and column', () => {
    const e = recipeError('version: 1\npasses:\n  - pass: prune.magnitude\n    params: { sparsity: 0.5\n');
    expect(e.errors.length).toBeGreaterThan(0);
    expect(e.errors[0]!.line).toBeGreaterThanOrEqual(4);
    expect(e.message.split('\n')[1]).toMatch(/^recipe\.yaml:\d+:\d+ YAML syntax error: /);

    const dup = recipeError('version: 1\nversion: 1\npasses: [{ pass: prune.magnitude }]\n');
    expect(dup.errors[0]).toMatchObject({ line: 2, col: 1 });
    expect(dup.errors[0]!.message).toMatch(/^YAML syntax error: .*unique/);
  });

  it('an unknown pass id lists the known ids and suggests the closest', () => {
    const e = recipeError('version: 1\npasses:\n  - pass: prune.magnitud\n    params: { anything: 1 }\n');
    expect(e.errors).toEqual([
      {
        path: 'passes[0].pass',
        line: 3,
        col: 11,
        message: `unknown pass "prune.magnitud" (did you mean "prune.magnitude"?); known passes: ${PASSES.map((p) => p.id).join(', ')}`,
      },
    ]);
  });

  it('an empty recipe is one readable error', () => {
    const e = recipeError('# nothing yet\n');
    expect(e.errors).toHaveLength(1);
    expect(e.errors[0]!.message).toMatch(/recipe is empty/);
  });

  it('reads an empty passes list (a recipe that only converts: output.dtypes or --dtypes), and rejects a non-mapping params', () => {
    expect(parseRecipe('version: 1\npasses: []\n', 'r.yaml', PASSES).passes).toEqual([]);
    expect(parseRecipe('version: 1\npasses: []\noutput: { dtypes: [fp32, quantized, q4] }\n', 'r.yaml', PASSES).output.dtypes).toEqual(['fp32', 'q8', 'q4']);
    expect(recipeError('version: 1\npasses: []\noutput: { dtypes: [int3] }\n').errors.map((x) => `${x.line}:${x.col} ${x.path}: ${x.message}`)).toEqual([
      '3:20 output.dtypes[0]: expected fp32|fp16|q8|q4|q4f16|quantized, got "int3"',
    ]);
    expect(recipeError('version: 1\npasses:\n  - pass: quantize.rtn\n    params: 8\n').errors).toEqual([
      { path: 'passes[0].params', line: 4, col: 13, message: 'expected mapping, got 8' },
    ]);
  });
});

describe('loadRecipe', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pare-recipe-'));

  it('returns the recipe, its text and the sha256 of its bytes', () => {
    const path = join(dir, 'r.yaml');
    writeFileSync(path, VALID);
    const loaded = loadRecipe(path, PASSES);
    expect(loaded.text).toBe(VALID);
    expect(loaded.sha256).toBe(createHash('sha256').update(VALID).digest('hex'));
    expect(loaded.dir).toBe(dir);
    expect(loaded.recipe.passes).toHaveLength(2);
  });

  it('a missing file or a directory is a user error', () => {
    expect(() => loadRecipe(join(dir, 'nope.yaml'), PASSES)).toThrow(UserError);
    expect(() => loadRecipe(join(dir, 'nope.yaml'), PASSES)).toThrow(/not found/);
    expect(() => loadRecipe(dir, PASSES)).toThrow(/is a directory/);
  });

  it('errors name the path the user gave', () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, 'version: 1\npasses: [{ pass: quantize.rtn, params: { bits: 5 } }]\n');
    expect(() => loadRecipe(path, PASSES)).toThrow(`${path}:2:48 passes[0].params.bits: expected 2|3|4|8, got 5`);
  });
});
