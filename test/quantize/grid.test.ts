import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/util/random.js';
import { dequantizeMatrix, quantizeMatrix, type GridSpec } from '../../src/quantize/grid.js';

function randomMatrix(n: number, seed: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * (1 + 3 * r()));
}

const specs: GridSpec[] = [
  { bits: 8, granularity: { kind: 'channel' }, symmetric: true },
  { bits: 8, granularity: { kind: 'channel' }, symmetric: false },
  { bits: 4, granularity: { kind: 'group', size: 32 }, symmetric: true },
  { bits: 4, granularity: { kind: 'group', size: 32 }, symmetric: false },
  { bits: 3, granularity: { kind: 'group', size: 16 }, symmetric: false },
  { bits: 8, granularity: { kind: 'tensor' }, symmetric: true },
];

describe('quantization grid', () => {
  for (const spec of specs) {
    const g = spec.granularity;
    const label = `${spec.bits}-bit ${g.kind === 'group' ? `group ${g.size}` : `per-${g.kind}`} ${spec.symmetric ? 'sym' : 'asym'}`;

    it(`${label}: round-to-nearest error is at most half a step`, () => {
      const W = randomMatrix(24 * 64, spec.bits * 31 + (g.kind === 'group' ? g.size : g.kind === 'tensor' ? -1 : 0));
      const m = quantizeMatrix(W, 24, 64, spec);
      const Wq = dequantizeMatrix(m);
      const groups = 64 / m.groupSize;
      for (let i = 0; i < W.length; i++) {
        const s = m.scales[Math.floor(i / 64) * groups + Math.floor((i % 64) / m.groupSize)]!;
        expect(Math.abs(Wq[i]! - W[i]!)).toBeLessThanOrEqual(s / 2 + 1e-6 * s);
      }
    });

    it(`${label}: values already on the grid keep their codes (and, symmetric, their exact values)`, () => {
      const first = quantizeMatrix(randomMatrix(8 * 64, 3), 8, 64, spec);
      const W = dequantizeMatrix(first);
      const second = quantizeMatrix(W, 8, 64, spec);
      expect(second.q).toEqual(first.q);
      const again = dequantizeMatrix(second);
      // asymmetric scales are recomputed from float32 endpoints: equal to 1 ulp, not bit for bit
      if (spec.symmetric) expect(again).toEqual(W);
      else for (let i = 0; i < W.length; i++) expect(Math.abs(again[i]! - W[i]!)).toBeLessThanOrEqual(1e-6 * Math.abs(W[i]!) + 1e-7);
    });
  }

  it('mse clipping never increases the group error', () => {
    const W = randomMatrix(16 * 128, 9);
    W[5] = 40; // an outlier that plain min-max spends the grid on
    const err = (clip: boolean) => {
      const Wq = dequantizeMatrix(quantizeMatrix(W, 16, 128, { bits: 4, granularity: { kind: 'group', size: 128 }, symmetric: false, mseClip: clip }));
      return W.reduce((a, w, i) => a + Math.abs(w - Wq[i]!) ** 2.4, 0);
    };
    expect(err(true)).toBeLessThanOrEqual(err(false));
  });

  it('zero is exactly representable on asymmetric grids', () => {
    const W = Float32Array.from([0, 0.3, 0.9, 1.7, 0, 2.5, 3.1, 0.05]);
    const Wq = dequantizeMatrix(quantizeMatrix(W, 1, 8, { bits: 4, granularity: { kind: 'group', size: 8 }, symmetric: false }));
    expect(Wq[0]).toBe(0);
    expect(Wq[4]).toBe(0);
  });
});
