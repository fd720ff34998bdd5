import { describe, expect, it } from 'vitest';
import { datasetSpecFromCli } from '../../src/data/cli-spec.js';
import { loadDataset } from '../../src/data/load.js';
import { RandomSpec } from '../../src/data/spec.js';
import type { TensorDataset } from '../../src/data/types.js';
import { UserError } from '../../src/errors.js';
import { runCli } from '../cli/run-cli.js';
import { FIXTURES } from '../helpers.js';

const load = async (spec: Record<string, unknown>) => (await loadDataset(RandomSpec.parse({ kind: 'random', ...spec }), '.')) as TensorDataset;

function moments(v: Float32Array): { mean: number; std: number; min: number; max: number } {
  let s = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const x of v) {
    s += x;
    min = Math.min(min, x);
    max = Math.max(max, x);
  }
  const mean = s / v.length;
  let q = 0;
  for (const x of v) q += (x - mean) ** 2;
  return { mean, std: Math.sqrt(q / v.length), min, max };
}

describe('random datasets', () => {
  it('uniform [low, high): within the bounds, mean (low+high)/2 and std (high−low)/√12 within 3 standard errors; seeded, so the same every time', async () => {
    const ds = await load({ shape: [10, 10], count: 100, low: -2, high: 4, seed: 3 });
    expect(ds.count).toBe(100);
    expect(ds.sampleShape).toEqual([10, 10]);
    const m = moments(ds.data);
    expect(m.min).toBeGreaterThanOrEqual(-2);
    expect(m.max).toBeLessThan(4);
    const std = 6 / Math.sqrt(12);
    expect(Math.abs(m.mean - 1)).toBeLessThan((3 * std) / Math.sqrt(ds.data.length));
    expect(Math.abs(m.std - std)).toBeLessThan(0.03 * std);
    expect((await load({ shape: [10, 10], count: 100, low: -2, high: 4, seed: 3 })).data).toEqual(ds.data);
    expect((await load({ shape: [10, 10], count: 100, low: -2, high: 4, seed: 4 })).data).not.toEqual(ds.data);
    expect(ds.description).toBe('random 100 × [10×10], uniform [-2, 4), seed 3');
  });

  it('normal(mean, std): sample mean and std within tolerance of 10,000 draws', async () => {
    const ds = await load({ shape: [3, 4, 4], count: 200, distribution: 'normal', mean: 0.5, std: 2, layout: 'nchw' });
    const m = moments(ds.data);
    expect(Math.abs(m.mean - 0.5)).toBeLessThan((3 * 2) / Math.sqrt(ds.data.length));
    expect(Math.abs(m.std - 2)).toBeLessThan(0.05);
    expect(ds.layout).toBe('nchw');
  });

  it('bad bounds and layouts are user errors naming the field; the command line takes random:<distribution> with --shape and --count', async () => {
    await expect(load({ shape: [2], low: 1, high: 1 })).rejects.toThrow(UserError);
    await expect(load({ shape: [2], low: 1, high: 1 })).rejects.toThrow(/high \(1\) must be above low \(1\) \(field high\)/);
    await expect(load({ shape: [2, 2], layout: 'nhwc' })).rejects.toThrow(/layout nhwc needs a shape of 3 axes/);
    expect(datasetSpecFromCli('random:normal', { shape: [1, 28, 28], count: 8 }, '.').spec).toMatchObject({ kind: 'random', distribution: 'normal', shape: [1, 28, 28], count: 8 });
    expect(() => datasetSpecFromCli('random:uniform', {}, '.')).toThrow(/random data needs --shape/);
  });

  it('mnist-8 against itself on random inputs: fidelity only (KL 0, full top-1 agreement), no quality', async () => {
    const r = await runCli(['eval', FIXTURES.mnist, '--data', 'random:uniform', '--shape', '1x28x28', '--count', '8', '--reference', FIXTURES.mnist, '--no-latency', '--json']);
    expect(r.code, r.err).toBe(0);
    const report = JSON.parse(r.out);
    expect(report.fidelity).toMatchObject({ kl_mean: 0, top1_agreement: 1, positions: 8 });
    expect(report.measurements.model.quality).toBeUndefined();
    expect(report.data.description).toBe('random 8 × [1×28×28], uniform [0, 1), seed 0');
  });
});
