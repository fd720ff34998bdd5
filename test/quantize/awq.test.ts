import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { awq, gramError, searchAlpha } from '../../src/quantize/awq.js';
import { dequantizeMatrix, quantizeMatrix, type GridSpec } from '../../src/quantize/grid.js';
import { seededRandom } from '../../src/util/random.js';
import { gramRef, outputErrorRef } from '../reference/matmul.js';
import { allClose } from '../helpers.js';
import { calibratedContext, storiesCalibration, storiesLogits } from './models.js';

const ROOT = resolve(__dirname, '../..');

describe('quantize.awq', () => {
  it('the scales fold exactly: stories260K computes the same float outputs, and the chosen α lowers the rounding error', async () => {
    const model = readOnnx(join(ROOT, 'fixtures/stories260K/model.onnx'));
    const before = await storiesLogits(model);
    const data = await storiesCalibration(join(ROOT, 'fixtures'));
    const layers = linears(model).filter((l) => l.name.startsWith('layers.'));
    const result = await awq.apply(model, { bits: 3, granularity: 'group', group_size: 32, symmetric: false, grid: 20, v_to_o: true }, calibratedContext(model, data, 32, layers));
    // q/k/v and gate/up fold into the norms, down_proj into up_proj's rows, o_proj into v_proj's rows
    expect(result.layers).toHaveLength(35);
    expect(result.warnings).toEqual([]);
    const o = result.layers.filter((l) => l.name.endsWith('o_proj'));
    expect(o.map((l) => l.extra!.folded_into)).toEqual(o.map((l) => l.name.replace('o_proj', 'v_proj')));
    const c = allClose(await storiesLogits(model), before, 1e-4, 1e-4);
    expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5); // float32 reassociation only
    for (const l of result.layers) expect(l.objective!).toBeLessThanOrEqual(Number(l.extra!.rounding_error_unscaled));
    expect(result.layers.some((l) => Number(l.extra!.alpha) > 0)).toBe(true);
    expect(result.layers.reduce((a, l) => a + l.objective!, 0)).toBeLessThan(result.layers.reduce((a, l) => a + Number(l.extra!.rounding_error_unscaled), 0)); // measured 232.0 → 231.2
  });

  it('the searched error is ‖X·ΔWᵀ‖² on the calibration rows, and α is the best of the grid by brute force', () => {
    const r = seededRandom(5);
    const [n, K, rows] = [64, 40, 12];
    const X = Float32Array.from({ length: n * K }, (_, i) => (r() * 2 - 1) * (i % K < 4 ? 8 : 1));
    const W = Float32Array.from({ length: rows * K }, () => r() * 2 - 1);
    const G = gramRef(X, n, K);
    const spec: GridSpec = { bits: 3, granularity: { kind: 'group', size: 16 }, symmetric: false };
    const direct = (Wq: Float32Array) => outputErrorRef(W, Wq, X, n, rows, K);
    const rtn = dequantizeMatrix(quantizeMatrix(W, rows, K, spec));
    expect(gramError(W, rtn, rows, K, G)).toBeCloseTo(direct(rtn), 6);
    // brute force: every α of the grid, scaled, rounded, unscaled, error measured on X directly
    const rms = Float64Array.from({ length: K }, (_, j) => Math.sqrt(G[j * K + j]! / n));
    const errors = Array.from({ length: 20 }, (_, i) => {
      const s = rms.map((a) => a ** (i / 20));
      const norm = Math.sqrt(Math.max(...s) * Math.min(...s));
      const Ws = W.map((w, idx) => w * (s[idx % K]! / norm));
      const q = dequantizeMatrix(quantizeMatrix(Ws, rows, K, spec)).map((v, idx) => v / (s[idx % K]! / norm));
      return direct(q);
    });
    const best = errors.indexOf(Math.min(...errors));
    const choice = searchAlpha([{ W, rows }], K, G, n, spec, 20);
    expect(choice.alpha).toBeCloseTo(best / 20, 12);
    expect(choice.errorAfter).toBeCloseTo(errors[best]!, 4);
    expect(choice.errorBefore).toBeCloseTo(errors[0]!, 4);
    expect(best).toBeGreaterThan(0); // the loud channels make scaling pay
  });
});
