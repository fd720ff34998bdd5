import { describe, expect, it } from 'vitest';
import type { InputStats } from '../../src/calibrate/stats.js';
import { prepareHessian } from '../../src/obs/hessian.js';
import { gptq, gptqQuantize, gptqRefit } from '../../src/quantize/gptq.js';
import { dequantizeMatrix, groupCount, quantizeMatrix, type GridSpec, type QuantizedMatrix } from '../../src/quantize/grid.js';
import { refitScales } from '../../src/quantize/refit.js';
import { allClose } from '../helpers.js';
import { correlatedLayer, hWeightedError, refitRowRef } from '../reference/scale-refit.js';

/** Scale refit after the codes are fixed: the normal equations' solution, never a larger H-weighted error. */

const row = <T extends Float32Array | Uint8Array>(v: T, r: number, n: number): T => v.subarray(r * n, (r + 1) * n) as T;

function rowErrors(W: Float32Array, m: QuantizedMatrix, H: Float64Array): number[] {
  const Wq = dequantizeMatrix(m);
  return Array.from({ length: m.rows }, (_, r) => hWeightedError(row(W, r, m.cols), row(Wq, r, m.cols), H));
}

describe('scale refit', () => {
  for (const rows of [3, 120]) {
    it(`equals the float64 normal-equations solution (AᵀHA)·s = AᵀH·w: ${rows} rows (${rows > 3 ? 'GEMMs on ONNX Runtime' : 'plain loops'}), K = 20 in groups of 8 (short last group), correlated H`, async () => {
      const cols = 20;
      const { W, xtx } = correlatedLayer(rows, cols, 64, 5);
      const m = quantizeMatrix(W, rows, cols, { bits: 3, granularity: { kind: 'group', size: 8 }, symmetric: false });
      const fit = await refitScales(W, m, xtx);
      expect(fit.refitted).toBeGreaterThanOrEqual(Math.ceil(rows * 0.9));
      const G = groupCount(cols, 8);
      for (let r = 0; r < rows; r++) {
        const kept = row(fit.scales, r, G).every((v, i) => v === m.scales[r * G + i]);
        const ref = kept ? row(m.scales, r, G) : refitRowRef(row(W, r, cols), row(m.q, r, cols), row(m.zeros, r, G), 8, xtx);
        const c = allClose(row(fit.scales, r, G), ref, 1e-6, 0); // float32 storage: measured ≤ 6e-8
        expect(c.ok, c.worst).toBe(true);
      }
    });
  }

  it('with H = I (no calibration) each group\'s scale is Σ a·w / Σ a², a = q − z', async () => {
    const [rows, cols, g] = [4, 48, 16];
    const { W } = correlatedLayer(rows, cols, 1, 9);
    const m = quantizeMatrix(W, rows, cols, { bits: 4, granularity: { kind: 'group', size: g }, symmetric: true });
    const fit = await refitScales(W, m);
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < cols / g; k++) {
        let [aw, aa] = [0, 0];
        for (let j = k * g; j < (k + 1) * g; j++) {
          const a = m.q[r * cols + j]! - m.zeros[r * 3 + k]!;
          aw += a * W[r * cols + j]!;
          aa += a * a;
        }
        expect(fit.scales[r * 3 + k]).toBeCloseTo(aw / aa, 6);
      }
    }
  });

  it('never raises any row\'s H-weighted error: 12 layers, 2–4 bits, symmetric and asymmetric, round-to-nearest and GPTQ codes', async () => {
    for (let i = 0; i < 12; i++) {
      const [rows, cols] = [6, 40];
      const { W, xtx } = correlatedLayer(rows, cols, 30 + 10 * i, 100 + i);
      const spec: GridSpec = { bits: [2, 3, 4][i % 3]!, granularity: i % 4 === 3 ? { kind: 'channel' } : { kind: 'group', size: 16 }, symmetric: i % 2 === 0, mseClip: i % 5 === 0 };
      let m = quantizeMatrix(W, rows, cols, spec);
      if (i >= 6) {
        const stats: InputStats = { tensor: 'x', dim: cols, rows: 100, xtx };
        const Wg = W.slice();
        const prepared = await prepareHessian(stats, Wg, rows, { dampening: 0.01, pass: 't', layer: 'l' });
        ({ m } = await gptqQuantize(Wg, rows, cols, prepared.Hinv, undefined, { ...spec, blockSize: 16 }));
      }
      const before = rowErrors(W, m, xtx);
      const fit = await refitScales(W, m, xtx);
      const after = rowErrors(W, { ...m, scales: fit.scales }, xtx);
      for (let r = 0; r < rows; r++) expect(after[r]!).toBeLessThanOrEqual(before[r]!);
      expect(fit.after).toBeLessThan(fit.before);
      expect(fit.after / fit.before).toBeCloseTo(after.reduce((a, b) => a + b) / before.reduce((a, b) => a + b), 6);
    }
  });

  it('gptqRefit: 3 rounds (refit, then GPTQ on the refitted grid) end at or below one round, below GPTQ alone, W untouched', async () => {
    const [rows, cols] = [16, 64];
    const { W, xtx } = correlatedLayer(rows, cols, 200, 77);
    const stats: InputStats = { tensor: 'x', dim: cols, rows: 200, xtx };
    const Wd = W.slice();
    const prepared = await prepareHessian(stats, Wd, rows, { dampening: 0.01, pass: 't', layer: 'l' });
    const spec: GridSpec & { blockSize: number } = { bits: 3, granularity: { kind: 'group', size: 16 }, symmetric: false, blockSize: 32 };
    const total = (m: QuantizedMatrix) => rowErrors(W, m, xtx).reduce((a, b) => a + b);
    const plain = (await gptqQuantize(Wd.slice(), rows, cols, prepared.Hinv, undefined, spec)).m;
    const one = await gptqRefit(W, Wd, rows, cols, prepared, xtx, { ...spec, rounds: 1 });
    const three = await gptqRefit(W, Wd, rows, cols, prepared, xtx, { ...spec, rounds: 3 });
    expect(total(one.m)).toBeLessThan(total(plain));
    expect(total(three.m)).toBeLessThanOrEqual(total(one.m));
    expect(three.refit.after / total(three.m)).toBeCloseTo(1, 6);
    expect(one.m.q).toEqual(plain.q);
  });

  it('refit_scales with granularity tensor is a recipe error naming the field', () => {
    const r = gptq.params.safeParse({ bits: 4, granularity: 'tensor', refit_scales: true });
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => i.path.join('.'))).toContain('refit_scales');
  });
});
