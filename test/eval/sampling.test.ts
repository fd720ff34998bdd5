import { describe, expect, it } from 'vitest';
import { argmax, sampleToken, tokenPicker } from '../../src/eval/sampling.js';

/** Frequencies of `n` draws at evenly spaced u = (i + 0.5)/n: the exact CDF inverse, no sampling noise. */
function frequencies(logits: number[], temperature: number, topK: number | undefined, n = 10000): number[] {
  const counts = logits.map(() => 0);
  for (let i = 0; i < n; i++) counts[sampleToken(logits, temperature, topK, (i + 0.5) / n)]!++;
  return counts.map((c) => c / n);
}

describe('token sampling', () => {
  const logits = [Math.log(1), Math.log(2), Math.log(3), Math.log(4)];

  it('draws softmax(logits / T): probabilities 1:2:3:4 at T = 1, squared at T = 0.5', () => {
    const p1 = frequencies(logits, 1, undefined);
    [0.1, 0.2, 0.3, 0.4].forEach((p, i) => expect(p1[i]).toBeCloseTo(p, 3)); // grid of 10⁴ draws: error ≤ 1e-4
    const p2 = frequencies(logits, 0.5, undefined);
    [1, 4, 9, 16].forEach((w, i) => expect(p2[i]).toBeCloseTo(w / 30, 3));
  });

  it('top-k keeps the k largest logits and renormalises: k = 2 gives 3:4', () => {
    const p = frequencies(logits, 1, 2);
    expect(p[0]! + p[1]!).toBe(0);
    expect(p[2]).toBeCloseTo(3 / 7, 3);
    expect(p[3]).toBeCloseTo(4 / 7, 3);
  });

  it('top-k 1 is greedy at any temperature; ties go to the lower id', () => {
    for (const u of [0, 0.3, 0.999]) expect(sampleToken([0.5, 2, -1, 2], 5, 1, u)).toBe(1);
    expect(argmax([0.5, 2, -1, 2])).toBe(1);
    expect(tokenPicker({ kind: 'greedy' })([0, 0, 7, 1])).toBe(2);
  });

  it('a seed repeats its draws exactly and another seed draws differently', () => {
    const row = Array.from({ length: 50 }, (_, i) => Math.sin(i));
    const draw = (seed: number) => {
      const pick = tokenPicker({ kind: 'sample', temperature: 1.5, seed });
      return Array.from({ length: 40 }, () => pick(row));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(draw(8)).not.toEqual(draw(7));
  });
});
