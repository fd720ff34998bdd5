import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Calibrator } from '../../src/calibrate/calibrator.js';
import { calibrationFeeds } from '../../src/calibrate/feeds.js';
import { loadDataset } from '../../src/data/load.js';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { configurePass } from '../../src/pass/pass.js';
import { outlierRatio, owlSparsities, wandaScores } from '../../src/prune/owl.js';
import { wanda } from '../../src/prune/wanda.js';
import { sparsegpt } from '../../src/prune/sparsegpt.js';

const ROOT = resolve(__dirname, '../..');

describe('OWL layerwise sparsity', () => {
  it('outlier ratio equals a hand count of Wanda scores above M × mean', () => {
    // W = [[1, −2], [3, 0.5]], Σx² = [4, 1] → ‖X‖ = [2, 1] → scores [2, 2, 6, 0.5], mean 2.625
    const scores = wandaScores(Float32Array.from([1, -2, 3, 0.5]), 2, 2, Float64Array.from([4, 1]));
    expect([...scores]).toEqual([2, 2, 6, 0.5]);
    expect(outlierRatio([scores], 2)).toBe(0.25); // threshold 5.25: only 6
    expect(outlierRatio([scores], 3)).toBe(0); // threshold 7.875
    // two layers of one unit pool their scores: [2, 2, 6, 0.5] + [10, 0, 0, 0], mean 2.5625, M 2 → 6 and 10
    expect(outlierRatio([scores, Float64Array.from([10, 0, 0, 0])], 2)).toBe(0.25);
  });

  it('sparsities equal the hand computation and keep the parameter-weighted mean at the target', () => {
    // D = [0.25, 0, 0.1] → n = [1, 0, 0.4]; s + λ(1 − 2n) = [0.4, 0.6, 0.52]; weighted mean (4, 4, 8) = 0.51 → shift −0.01
    const s = owlSparsities([0.25, 0, 0.1], [4, 4, 8], 0.5, 0.1);
    const hand = [0.39, 0.59, 0.51];
    s.forEach((v, i) => expect(v).toBeCloseTo(hand[i]!, 12));
    expect((s[0]! * 4 + s[1]! * 4 + s[2]! * 8) / 16).toBeCloseTo(0.5, 12);
    // equal ratios: uniform
    expect(owlSparsities([0.1, 0.1], [3, 5], 0.6, 0.08).map((v) => +v.toFixed(12))).toEqual([0.6, 0.6]);
  });

  it('refuses owl with an N:M pattern, naming the field', () => {
    const r = wanda.parse({ pattern: '2:4', owl: {} });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.success ? '' : r.error.issues)).toContain('owl');
  });

  it('Wanda and SparseGPT with OWL on stories260K: one sparsity per block, the global sparsity at the target', async () => {
    const model0 = readOnnx(join(ROOT, 'fixtures/stories260K/model.onnx'));
    const data = await loadDataset(
      { kind: 'text', path: 'tinystories/valid-head.txt', tokenizer: 'stories260K/tok512.bin', separator: '<|endoftext|>', bos: true, max_length: 512, select: '1-2', segment: 128 },
      join(ROOT, 'fixtures'),
    );
    const calibration = new Calibrator(calibrationFeeds(model0, data, 128), 'sequential', 1, { onWarning: () => {} });
    for (const pass of [wanda, sparsegpt]) {
      const model = readOnnx(join(ROOT, 'fixtures/stories260K/model.onnx'));
      const layers = linears(model).filter((l) => l.name.startsWith('layers.'));
      const configured = configurePass(pass, { sparsity: 0.6, owl: { lambda: 0.08, unit: 'block' } });
      const result = await configured.apply(model, { layers, seed: 0, random: Math.random, calibration, progress: { layer() {} }, where: 'passes[0]' });
      const byBlock = new Map<string, number>();
      let zeros = 0;
      let total = 0;
      for (const stat of result.layers) {
        const target = stat.extra!.owl_sparsity as number;
        const [rows, cols] = stat.shape as [number, number];
        // measured: each row (Wanda) or block (SparseGPT) rounds its count to whole weights
        expect(Math.abs(stat.sparsity! - target), stat.name).toBeLessThan(1 / cols + 1e-9);
        const unit = stat.extra!.owl_unit as string;
        if (byBlock.has(unit)) expect(byBlock.get(unit)).toBe(target);
        byBlock.set(unit, target);
        zeros += stat.sparsity! * rows * cols;
        total += rows * cols;
      }
      expect(byBlock.size).toBe(5);
      const spread = Math.max(...byBlock.values()) - Math.min(...byBlock.values());
      expect(spread).toBeGreaterThan(0.05); // outlier ratios differ across blocks
      expect(spread).toBeLessThanOrEqual(0.16 + 1e-9); // 2λ
      expect(Math.abs(zeros / total - 0.6), pass.id).toBeLessThan(2e-3); // measured ≈ 1e-4
      expect(String(result.summary!.owl_units)).toContain('layers.0');
    }
  }, 20_000);
});
