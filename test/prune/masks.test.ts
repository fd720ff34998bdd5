import { describe, expect, it } from 'vitest';
import { magnitudePrune } from '../../src/prune/magnitude.js';
import { kthSmallest, nmMask, rowwiseSmallestMask, smallestMask } from '../../src/prune/masks.js';
import { seededRandom } from '../../src/util/random.js';

function randomMatrix(n: number, seed: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

describe('mask selection', () => {
  it('smallestMask marks exactly count entries, ties broken by position', () => {
    const scores = Float32Array.from([3, 1, 1, 1, 2, 0]);
    expect(Array.from(smallestMask(scores, 3))).toEqual([0, 1, 1, 0, 0, 1]);
    expect(Array.from(smallestMask(scores, 0))).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Array.from(smallestMask(scores, 6))).toEqual([1, 1, 1, 1, 1, 1]);
  });

  it('smallestMask agrees with a brute-force sort of (score, index)', () => {
    const scores = Float32Array.from(randomMatrix(1000, 7), (v) => Math.round(Math.abs(v) * 50) / 50); // many ties
    const count = 437;
    const order = Array.from(scores.keys()).sort((a, b) => scores[a]! - scores[b]! || a - b);
    const expected = new Uint8Array(scores.length);
    for (const i of order.slice(0, count)) expected[i] = 1;
    expect(smallestMask(scores, count)).toEqual(expected);
  });

  it('kthSmallest (quickselect) equals the sorted array at every k: ties, sorted and reversed input, NaN, ±Infinity', () => {
    const rand = seededRandom(5);
    const cases: Float32Array[] = [
      Float32Array.from({ length: 1001 }, () => rand() - 0.5),
      Float32Array.from({ length: 500 }, () => Math.floor(rand() * 4)), // heavy ties
      Float32Array.from({ length: 300 }, (_, i) => i),
      Float32Array.from({ length: 300 }, (_, i) => -i),
      new Float32Array(64), // all equal
      Float32Array.from([3, NaN, 1, -Infinity, 2, Infinity, NaN, 0]),
      Float32Array.from([7]),
    ];
    for (const scores of cases) {
      const sorted = Float32Array.from(scores).sort();
      const before = scores.slice();
      for (let k = 1; k <= scores.length; k++) expect(kthSmallest(scores, k)).toBe(sorted[k - 1]);
      expect(kthSmallest(scores, scores.length + 5)).toBe(sorted[scores.length - 1]);
      expect(scores).toEqual(before); // the input is not reordered
    }
    expect(kthSmallest(Float32Array.from([1, 2]), 0)).toBe(-Infinity);
  });

  it('rowwiseSmallestMask prunes the same count in every row', () => {
    const scores = randomMatrix(8 * 10, 3).map(Math.abs);
    const mask = rowwiseSmallestMask(scores, 8, 10, 4);
    for (let r = 0; r < 8; r++) expect(mask.subarray(r * 10, r * 10 + 10).reduce((a, b) => a + b, 0)).toBe(4);
  });

  it('2:4 keeps the two largest of every four consecutive inputs', () => {
    const scores = Float32Array.from([4, 1, 3, 2, 0, 9, 9, 1]);
    expect(Array.from(nmMask(scores, 1, 8, 2, 4))).toEqual([0, 1, 0, 1, 1, 0, 0, 1]);
  });
});

describe('magnitudePrune', () => {
  it('zeroes exactly half the weights and only the smallest ones', () => {
    const W = randomMatrix(64 * 172, 11);
    const original = W.slice();
    magnitudePrune(W, 64, 172, { sparsity: 0.5, pattern: undefined });
    const zeros = W.filter((v) => v === 0).length;
    expect(zeros).toBe(Math.round(0.5 * W.length));
    let maxPruned = 0;
    let minKept = Infinity;
    for (let i = 0; i < W.length; i++) {
      if (W[i] === 0) maxPruned = Math.max(maxPruned, Math.abs(original[i]!));
      else {
        minKept = Math.min(minKept, Math.abs(W[i]!));
        expect(W[i]).toBe(original[i]);
      }
    }
    expect(maxPruned).toBeLessThanOrEqual(minKept);
  });

  it('4:8 leaves four nonzeros in every group of eight', () => {
    const W = randomMatrix(16 * 64, 5);
    magnitudePrune(W, 16, 64, { sparsity: 0, pattern: { n: 4, m: 8 } });
    for (let g = 0; g < W.length; g += 8) expect(W.subarray(g, g + 8).filter((v) => v !== 0).length).toBe(4);
  });
});
