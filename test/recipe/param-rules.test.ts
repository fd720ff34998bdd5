import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { runCli } from '../cli/run-cli.js';
import { tempDir } from '../helpers.js';

/**
 * Param rules that used to throw inside `apply`, minutes into a run, are recipe errors now:
 * `pare recipe validate` (and `pare compress`, before any pass runs) names the field and its
 * line:col. stories260K's down_proj has 172 inputs: a multiple of 4, not of 8 or 32.
 */

const ROOT = resolve(__dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');
const tmp = tempDir('pare-param-rules-');
afterAll(() => tmp.cleanup());

const CALIBRATION = ['calibration:', '  data: { kind: text, path: x.txt, tokenizer: tok.bin }'];

function recipe(name: string, lines: string[]): string {
  const path = join(tmp.dir, name);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

/** The located lines of a RecipeError on stderr, without the file name: `9:14 passes[1].params.ratio: ...`. */
function errors(err: string, path: string): string[] {
  return err
    .split('\n')
    .filter((l) => l.startsWith(`${path}:`) && !l.startsWith(`${path}: `))
    .map((l) => l.slice(path.length + 1));
}

async function rejected(path: string, ...args: string[]): Promise<string[]> {
  const r = await runCli(['recipe', 'validate', path, ...args]);
  expect(r.code, r.out + r.err).toBe(2);
  expect(r.err).not.toContain('internal error');
  return errors(r.err, path);
}

async function accepted(path: string, ...args: string[]): Promise<string> {
  const r = await runCli(['recipe', 'validate', path, ...args]);
  expect(r.code, r.err).toBe(0);
  return r.out;
}

describe('params-only rules live in the schema', () => {
  it('decompose.svd needs exactly one of rank, ratio or energy: none points at params, a second one at itself', async () => {
    const path = recipe('svd.yaml', [
      'version: 1', // 1
      'passes:', // 2
      '  - pass: decompose.svd', // 3
      '    params:', // 4
      '      activation_aware: false', // 5
      '  - pass: decompose.svd', // 6
      '    params:', // 7
      '      rank: 8', // 8
      '      energy: 0.9', // 9
    ]);
    expect(await rejected(path)).toEqual([
      '4:5 passes[0].params: needs exactly one of rank, ratio or energy, got none',
      '9:15 passes[1].params.energy: needs exactly one of rank, ratio or energy, got rank and energy',
    ]);
    await accepted(recipe('svd-ok.yaml', ['version: 1', 'passes:', '  - pass: decompose.svd', '    params: { rank: 8 }']));
  });

  it('decompose.kronecker: ratio together with all of terms, m1 and n1 points at ratio', async () => {
    const path = recipe('kron.yaml', [
      'version: 1', // 1
      'passes:', // 2
      '  - pass: decompose.kronecker', // 3
      '    params: { terms: 2, m1: 8, n1: 8, ratio: 0.5 }', // 4
    ]);
    expect(await rejected(path)).toEqual([
      '4:46 passes[0].params.ratio: ratio chooses the shape and terms, but terms, m1 and n1 are all given; drop ratio or one of the others',
    ]);
    await accepted(recipe('kron-ok.yaml', ['version: 1', 'passes:', '  - pass: decompose.kronecker', '    params: { terms: 2, m1: 8, ratio: 0.5 }']));
  });

  it('quantize.rtn: format matmulnbits needs granularity group, and a power-of-two group_size from 16 to 256', async () => {
    const path = recipe('rtn.yaml', [
      'version: 1', // 1
      'passes:', // 2
      '  - pass: quantize.rtn', // 3
      '    params:', // 4
      '      bits: 4', // 5
      '      format: matmulnbits', // 6
      '  - pass: quantize.rtn', // 7
      '    params: { bits: 4, granularity: group, group_size: 24 }', // 8
    ]);
    expect(await rejected(path)).toEqual([
      '6:15 passes[0].params.format: format matmulnbits stores per-block scales; set granularity: group with group_size 16..256',
      '8:56 passes[1].params.group_size: format matmulnbits (MatMulNBits) needs a power of two from 16 to 256, got 24',
    ]);
  });

  it('prune.magnitude: scope global sets one threshold, which N:M has no use for', async () => {
    const path = recipe('global.yaml', ['version: 1', 'passes:', '  - pass: prune.magnitude', '    params: { pattern: "2:4", scope: global }']);
    expect(await rejected(path)).toEqual([
      '4:38 passes[0].params.scope: scope global sets one threshold for unstructured pruning; pattern 2:4 keeps 2 of every 4 inputs in each row. Drop scope or set pattern: unstructured',
    ]);
  });
});

describe('rules on the rest of the recipe: needsCalibration(params)', () => {
  it('prune.channels and prune.heads with importance activation (the default) need a calibration section, reported at importance', async () => {
    const lines = [
      'version: 1', // 1
      'passes:', // 2
      '  - pass: prune.channels', // 3
      '    params:', // 4
      '      sparsity: 0.3', // 5
      '  - pass: prune.heads', // 6
      '    params: { importance: activation }', // 7
    ];
    expect(await rejected(recipe('structured.yaml', lines))).toEqual([
      '4:5 passes[0].params.importance: prune.channels with importance "activation" needs calibration data, but the recipe has no calibration section; add calibration: { data: {...}, samples: 128 } or set importance: weight',
      '7:27 passes[1].params.importance: prune.heads with importance "activation" needs calibration data, but the recipe has no calibration section; add calibration: { data: {...}, samples: 128 } or set importance: weight',
    ]);
    await accepted(recipe('structured-calibrated.yaml', ['version: 1', ...CALIBRATION, ...lines.slice(1)]));
    await accepted(recipe('structured-weight.yaml', ['version: 1', 'passes:', '  - pass: prune.channels', '    params: { importance: weight }', '  - pass: prune.heads', '    params: { importance: weight }']));
  });

  it('decompose.kronecker mode iterative and decompose.svd activation_aware need calibration; without it they run on the weights alone', async () => {
    const path = recipe('iterative.yaml', [
      'version: 1', // 1
      'passes:', // 2
      '  - pass: decompose.kronecker', // 3
      '    params: { ratio: 0.5, mode: iterative }', // 4
      '  - pass: decompose.svd', // 5
      '    params: { rank: 4, activation_aware: true }', // 6
    ]);
    expect(await rejected(path)).toEqual([
      '4:33 passes[0].params.mode: decompose.kronecker with mode "iterative" needs calibration data, but the recipe has no calibration section; add calibration: { data: {...}, samples: 128 } or set mode: weight',
      '6:42 passes[1].params.activation_aware: decompose.svd with activation_aware true needs calibration data, but the recipe has no calibration section; add calibration: { data: {...}, samples: 128 } or set activation_aware: false',
    ]);
    await accepted(recipe('weight-only.yaml', ['version: 1', 'passes:', '  - pass: decompose.kronecker', '    params: { ratio: 0.5 }', '  - pass: decompose.svd', '    params: { rank: 4 }']));
  });
});

describe('rules on the model: checkLayers, before any pass runs', () => {
  const modelRules = [
    'version: 1', // 1
    'passes:', // 2
    '  - pass: prune.magnitude', // 3
    '    targets: ["layers.*.self_attn.*"]', // 4
    '  - pass: prune.magnitude', // 5
    '    targets: ["layers.0.mlp.*"]', // 6
    '    params: { pattern: "4:8" }', // 7
    '  - pass: quantize.rtn', // 8
    '    targets: ["layers.*.mlp.*"]', // 9
    '    params: { bits: 4, granularity: group, group_size: 32 }', // 10
    '  - pass: decompose.kronecker', // 11
    '    targets: ["layers.1.mlp.down_proj"]', // 12
    '    params: { m1: 3 }', // 13
  ];
  const expected = [
    "7:24 passes[1].params.pattern: prune.magnitude: 'layers.0.mlp.down_proj' has 172 inputs, not a multiple of 8 for pattern 4:8; add it to ignore:",
    // quantize.rtn group 32 fits down_proj's 172 inputs: the last group is 12 wide
    "13:19 passes[3].params.m1: decompose.kronecker: 'layers.1.mlp.down_proj' is 64×172; m1 3 must divide its 64 outputs",
  ];

  it('validate --model reports every layer a param does not fit, at the param; without --model the recipe is fine', async () => {
    const path = recipe('model-rules.yaml', modelRules);
    expect(await rejected(path, '--model', MODEL)).toEqual(expected);
    await accepted(path);
  });

  it('compress fails with the same errors before the first pass: no output, no work dir', async () => {
    const path = recipe('model-rules-run.yaml', modelRules);
    const out = join(tmp.dir, 'model-rules.onnx');
    const r = await runCli(['compress', MODEL, '-r', path, '-o', out]);
    expect(r.code, r.err).toBe(2);
    expect(errors(r.err, path)).toEqual(expected);
    expect(r.err).not.toContain('pass 1/4');
    expect(existsSync(out)).toBe(false);
    expect(existsSync(join(tmp.dir, '.pare-work'))).toBe(false);
  });

  // prune.channels changes layer widths, so the passes after it are checked on the model it leaves:
  // multiple_of 32 keeps 128 of down_proj's 172 inputs (a multiple of 32), multiple_of 1 keeps 120 (not one), and 16:32 sparsity needs whole groups of 32
  const afterChannels = (multipleOf: number) => [
    'version: 1', // 1
    'passes:', // 2
    '  - pass: prune.channels', // 3
    '    targets: ["layers.*.mlp.*"]', // 4
    `    params: { sparsity: 0.3, importance: weight, multiple_of: ${multipleOf} }`, // 5
    '  - pass: prune.magnitude', // 6
    '    targets: ["layers.0.mlp.down_proj"]', // 7
    '    params: { pattern: "16:32" }', // 8
  ];

  it('after a pass that changes layers, a pass is checked on the layers it will see, not the input model', async () => {
    const path = recipe('after-channels.yaml', afterChannels(32));
    expect(await accepted(path, '--model', MODEL)).toContain('passes[1] prune.magnitude: 1 layers (params checked against its layers when it runs: passes[0] changes layers)');
    const out = join(tmp.dir, 'after-channels.onnx');
    const r = await runCli(['compress', MODEL, '-r', path, '-o', out]);
    expect(r.code, r.err).toBe(0);
    const written = readOnnx(out);
    const down = linears(written).find((l) => l.name === 'layers.0.mlp.down_proj')!;
    expect(down.inFeatures).toBe(128);
    expect(readWeight(written, down).filter((w) => w === 0).length).toBe((64 * 128) / 2);
  });

  it('a later pass whose params do not fit the changed layers fails, located, before it changes anything', async () => {
    const path = recipe('after-channels-bad.yaml', afterChannels(1));
    const out = join(tmp.dir, 'after-channels-bad.onnx');
    const r = await runCli(['compress', MODEL, '-r', path, '-o', out]);
    expect(r.code, r.err).toBe(2);
    expect(errors(r.err, path)).toEqual([
      "8:24 passes[1].params.pattern: prune.magnitude: 'layers.0.mlp.down_proj' has 120 inputs, not a multiple of 32 for pattern 16:32; add it to ignore:",
    ]);
    expect(r.err).not.toContain('pass 2/2');
    expect(existsSync(out)).toBe(false);
  });
});
