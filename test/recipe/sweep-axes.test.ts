import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { PASSES } from '../../src/pipeline/registry.js';
import { expandSweep, parseSetFlag, parseSettingPath } from '../../src/recipe/sweep-axes.js';
import { runCli } from '../cli/run-cli.js';

const BASE = `version: 1
calibration:
  data: { kind: tokens, path: calib.bin, seq_len: 64 }
  samples: 8
passes:
  - pass: prune.sparsegpt
    targets: ["layers.*"]
    params: { sparsity: 0.5 }
  - pass: quantize.rtn
    params:
      bits: 8
eval:
  data: { kind: text, path: valid.txt, tokenizer: tok.bin, select: "11-16" }
`;

function sweepOf(text: string, sets: string[] = []) {
  return expandSweep({ path: 'base.yaml', text, dir: '/tmp', sha256: 'ab'.repeat(32) }, sets, PASSES);
}

function failure(text: string, sets: string[]): string {
  try {
    sweepOf(text, sets);
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return (e as Error).message;
  }
  throw new Error('expected the sweep to be rejected');
}

describe('setting paths and --set values', () => {
  it('paths read as keys and indices', () => {
    expect(parseSettingPath('passes[0].params.sparsity')).toEqual(['passes', 0, 'params', 'sparsity']);
    expect(parseSettingPath('calibration.samples')).toEqual(['calibration', 'samples']);
    expect(parseSettingPath('passes[1].targets[0]')).toEqual(['passes', 1, 'targets', 0]);
    for (const bad of ['', 'passes.', '[0]', 'passes[0]params', 'a..b', 'a[x]', 'pass es']) expect(parseSettingPath(bad)).toBeUndefined();
  });

  it('values are a YAML flow list: numbers, strings, booleans, quoted commas, lists', () => {
    expect(parseSetFlag('passes[0].params.sparsity=0.3,0.4, 0.5').values).toEqual([0.3, 0.4, 0.5]);
    expect(parseSetFlag('passes[0].params.pattern=2:4,4:8').values).toEqual(['2:4', '4:8']);
    expect(parseSetFlag('eval.data.select="1-10","1,3"').values).toEqual(['1-10', '1,3']);
    expect(parseSetFlag('passes[1].params.symmetric=true,false').values).toEqual([true, false]);
    expect(parseSetFlag('passes[0].targets=["a.*"],["b.*", "c"]').values).toEqual([['a.*'], ['b.*', 'c']]);
  });
});

describe('expandSweep', () => {
  it('the points are the product of the axes, first axis outermost, each with its settings and label', () => {
    const s = sweepOf(BASE, ['passes[0].params.sparsity=0.3,0.5,0.7', 'passes[1].params.bits=8,4']);
    expect(s.points).toHaveLength(6);
    expect(s.points.map((p) => p.label)).toEqual(['sparsity=0.3,bits=8', 'sparsity=0.3,bits=4', 'sparsity=0.5,bits=8', 'sparsity=0.5,bits=4', 'sparsity=0.7,bits=8', 'sparsity=0.7,bits=4']);
    const p = s.points[3]!;
    expect(p.settings).toEqual([['passes[0].params.sparsity', 0.5], ['passes[1].params.bits', 4]]);
    expect(p.recipe.recipe.passes[0]!.params.sparsity).toBe(0.5);
    expect(p.recipe.recipe.passes[1]!.params.bits).toBe(4);
    // the rest of the recipe is the base's, defaults filled
    expect(p.recipe.recipe.passes[1]!.params.granularity).toBe('channel');
    expect(p.recipe.recipe.calibration!.samples).toBe(8);
    expect(new Set(s.points.map((q) => q.recipe.sha256)).size).toBe(6);
  });

  it('a sweep: section gives the same points (same recipe hashes) as the same --set flags, and a --set replaces its axis', () => {
    const withSection = `${BASE}sweep:\n  passes[0].params.sparsity: [0.3, 0.5]\n  passes[1].params.bits: [8, 4]\n`;
    const a = sweepOf(withSection);
    const b = sweepOf(BASE, ['passes[0].params.sparsity=0.3,0.5', 'passes[1].params.bits=8,4']);
    expect(a.points.map((p) => p.recipe.sha256)).toEqual(b.points.map((p) => p.recipe.sha256));
    expect(a.points[0]!.recipe.recipe.sweep).toBeUndefined();
    const c = sweepOf(withSection, ['passes[0].params.sparsity=0.6']);
    expect(c.points.map((p) => p.label)).toEqual(['sparsity=0.6,bits=8', 'sparsity=0.6,bits=4']);
    expect(c.axes[0]!.source).toBe('--set passes[0].params.sparsity=0.6');
  });

  it('a param the base does not write can be set, and writing a default changes nothing', () => {
    const s = sweepOf(BASE, ['passes[0].params.block_size=64,128']);
    expect(s.points[0]!.recipe.recipe.passes[0]!.params.block_size).toBe(64);
    // 128 is block_size's default: the same recipe as the base
    expect(s.points[1]!.recipe.sha256).toBe(sweepOf(BASE).points[0]!.recipe.sha256);
  });

  it('no axes: one point, the base recipe', () => {
    const s = sweepOf(BASE);
    expect(s.points).toHaveLength(1);
    expect(s.points[0]!.label).toBe('base');
  });

  it('a path that names no recipe field is one line naming the --set and the fields there are', () => {
    expect(failure(BASE, ['passes[0].params.sparsty=0.3'])).toBe(
      '--set passes[0].params.sparsty=0.3: passes[0].params.sparsty names no recipe field: prune.sparsegpt has no param "sparsty" (did you mean "sparsity"?); its params: sparsity, pattern, owl, dampening, block_size',
    );
    expect(failure(BASE, ['eval.data.selct=1-3'])).toBe(
      '--set eval.data.selct=1-3: eval.data.selct names no recipe field: no recipe field "selct" in eval.data (did you mean "select"?); it takes: kind, path, separator, tokenizer, select, bos, max_length, stride, segment',
    );
    expect(failure(BASE, ['passes[2].params.bits=4'])).toBe('--set passes[2].params.bits=4: passes[2].params.bits names no recipe field: the recipe has 2 passes (passes[0]..passes[1]); --set changes a pass, it cannot add one');
    expect(failure(BASE, ['calibration.sample=8'])).toMatch(/^--set calibration\.sample=8: .*did you mean "samples"/);
    expect(failure(BASE, ['sweep=1'])).toMatch(/^--set sweep=1: sweep names no recipe field: sweep lists the axes/);
    for (const sets of [['passes[0].params.sparsty=0.3'], ['eval.data.selct=1-3']]) expect(failure(BASE, sets).split('\n')).toHaveLength(1);
  });

  it('a value of the wrong type is one line naming the --set and its value, once for all points that have it', () => {
    const m = failure(BASE, ['passes[0].params.sparsity=0.3,1.5', 'passes[1].params.bits=8,4']);
    expect(m).toBe('--set passes[0].params.sparsity=1.5: expected number 0..1, got 1.5');
    expect(failure(BASE, ['passes[1].params.bits=8,5'])).toBe('--set passes[1].params.bits=5: expected 2|3|4|8, got 5');
    expect(failure(BASE, ['calibration.samples=abc'])).toMatch(/^--set calibration\.samples=abc: expected integer >= 1, got "abc"$/);
  });

  it('a problem a setting causes elsewhere (a cross-field rule) is located in the base file and names the point', () => {
    // the rule's issue is at the value the setting broke
    expect(failure(BASE, ['passes[1].params.format=matmulnbits'])).toBe('--set passes[1].params.format=matmulnbits: format matmulnbits stores per-block scales; set granularity: group with group_size 16..256');
    // ... or at a field of the base file the setting made wrong
    const base = BASE.replace('      bits: 8\n', '      bits: 8\n      granularity: group\n      group_size: 32\n      format: matmulnbits\n');
    expect(failure(base, ['passes[1].params.granularity=group,channel'])).toBe(
      'sweep point granularity=channel: base.yaml:14:15 passes[1].params.format: format matmulnbits stores per-block scales; set granularity: group with group_size 16..256',
    );
  });

  it('a sweep: section path that names no field is located at its key in the file', () => {
    const m = failure(`${BASE}sweep:\n  passes[0].params.sparsty: [0.3]\n`, []);
    expect(m).toMatch(/^base\.yaml:15:3 sweep passes\[0\]\.params\.sparsty: passes\[0\]\.params\.sparsty names no recipe field: prune\.sparsegpt has no param "sparsty"/);
  });

  it('the same --set twice, no values, no "=": one-line errors', () => {
    expect(failure(BASE, ['passes[0].params.sparsity=0.3', 'passes[0].params.sparsity=0.4'])).toMatch(/is set twice/);
    expect(failure(BASE, ['passes[0].params.sparsity='])).toMatch(/no values/);
    expect(failure(BASE, ['passes[0].params.sparsity'])).toMatch(/expected PATH=VALUE/);
  });
});

describe('pare recipe validate with a sweep: section', () => {
  it('counts the points of a valid section; a bad value is one line at the section key, exit 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pare-validate-sweep-'));
    try {
      const good = join(dir, 'good.yaml');
      writeFileSync(good, `${BASE}sweep:\n  passes[0].params.sparsity: [0.3, 0.5]\n  passes[1].params.bits: [8, 4, 2]\n`);
      const ok = await runCli(['recipe', 'validate', good]);
      expect(ok.code, ok.err).toBe(0);
      expect(ok.out).toContain('  sweep: 6 points');
      const bad = join(dir, 'bad.yaml');
      writeFileSync(bad, `${BASE}sweep:\n  passes[0].params.sparsity: [0.3, 5]\n`);
      const r = await runCli(['recipe', 'validate', bad]);
      expect(r.code).toBe(2);
      expect(r.err).toBe(`pare: ${bad}:15:3 sweep passes[0].params.sparsity=5: expected number 0..1, got 5\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
