import { describe, expect, it } from 'vitest';
import { dequantizeMatrix, quantizeMatrix, type GridSpec } from '../../src/quantize/grid.js';
import { seededRandom } from '../../src/util/random.js';

/**
 * MSE clipping against exhaustive search, in float64 and written out here independently of grid.ts:
 * a grid is (scale, zero) from the range [p·min, p·max]; its error is Σ c_j·|w_j − ŵ_j|^2.4.
 */

function gridOf(min: number, max: number, bits: number, symmetric: boolean): { scale: number; zero: number } {
  if (symmetric) {
    const half = 2 ** (bits - 1);
    return { scale: Math.fround(Math.max(-min, max) / (half - 1)), zero: half };
  }
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  const scale = (hi - lo) / (2 ** bits - 1);
  return { scale: Math.fround(scale), zero: Math.min(2 ** bits - 1, Math.max(0, Math.round(-lo / scale))) };
}

function error(w: ArrayLike<number>, c: ArrayLike<number>, g: { scale: number; zero: number }, bits: number): number {
  let e = 0;
  for (let j = 0; j < w.length; j++) {
    const q = Math.min(2 ** bits - 1, Math.max(0, Math.round(w[j]! / g.scale) + g.zero));
    e += c[j]! * Math.abs(g.scale * (q - g.zero) - w[j]!) ** 2.4;
  }
  return e;
}

function groupError(w: Float32Array, c: ArrayLike<number>, spec: GridSpec): number {
  const wq = dequantizeMatrix(quantizeMatrix(w, 1, w.length, spec));
  let e = 0;
  for (let j = 0; j < w.length; j++) e += c[j]! * Math.abs(wq[j]! - w[j]!) ** 2.4;
  return e;
}

describe('MSE clipping', () => {
  const r = seededRandom(11);
  const cases = Array.from({ length: 12 }, (_, i) => {
    const w = Float32Array.from({ length: 8 }, () => (r() * 2 - 1) * (r() < 0.2 ? 4 : 1));
    const c = i % 2 === 0 ? Array<number>(8).fill(1) : Array.from({ length: 8 }, () => 0.1 + 3 * r());
    return { w, c, bits: [2, 3, 4][i % 3]!, symmetric: i % 4 < 2 };
  });

  it('picks the best of its 80 shrink factors, found by exhaustive search, on 12 tiny groups (2–4 bits, sym/asym, weighted or not)', () => {
    for (const { w, c, bits, symmetric } of cases) {
      const min = Math.min(...w);
      const max = Math.max(...w);
      let best = Infinity;
      for (let i = 0; i < 80; i++) best = Math.min(best, error(w, c, gridOf((1 - i / 100) * min, (1 - i / 100) * max, bits, symmetric), bits));
      const got = groupError(w, c, { bits, symmetric, granularity: { kind: 'group', size: 8 }, mseClip: true, clipWeights: Float32Array.from(c) });
      expect(Math.abs(got - best)).toBeLessThanOrEqual(1e-6 * best); // ŵ in float32 here, float64 there
    }
  });

  it('is within 3 % of the continuous optimum over 20,000 shrink factors, and never worse than no clipping', () => {
    let worst = 0;
    for (const { w, c, bits, symmetric } of cases) {
      const min = Math.min(...w);
      const max = Math.max(...w);
      let fine = Infinity;
      for (let i = 0; i <= 20000; i++) {
        const p = 0.2 + (0.8 * i) / 20000;
        fine = Math.min(fine, error(w, c, gridOf(p * min, p * max, bits, symmetric), bits));
      }
      const spec: GridSpec = { bits, symmetric, granularity: { kind: 'group', size: 8 }, clipWeights: Float32Array.from(c) };
      const clipped = groupError(w, c, { ...spec, mseClip: true });
      expect(clipped).toBeLessThanOrEqual(groupError(w, c, spec) + 1e-12);
      worst = Math.max(worst, clipped / fine - 1);
    }
    expect(worst).toBeLessThanOrEqual(0.03); // measured 0.0084: the 0.01 steps cost under 1 %
  });

  it('weights move the optimum: inputs weighted 1000× pull the range in, at the cost of the outlier', () => {
    const w = Float32Array.from([0.1, -0.2, 0.15, 0.05, -0.1, 0.2, -0.05, 3]);
    const spec: GridSpec = { bits: 3, symmetric: false, granularity: { kind: 'group', size: 8 }, mseClip: true };
    const plain = quantizeMatrix(w, 1, 8, spec);
    const weighted = quantizeMatrix(w, 1, 8, { ...spec, clipWeights: Float32Array.from([1000, 1000, 1000, 1000, 1000, 1000, 1000, 1]) });
    expect(weighted.scales[0]!).toBeLessThan(plain.scales[0]!);
    const smallError = (m: typeof plain) => dequantizeMatrix(m).slice(0, 7).reduce((a, v, j) => a + (v - w[j]!) ** 2, 0);
    expect(smallError(weighted)).toBeLessThan(smallError(plain));
  });
});
