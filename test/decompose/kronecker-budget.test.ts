import { describe, expect, it } from 'vitest';
import { budgetCandidates, chooseShape } from '../../src/decompose/kronecker-budget.js';
import { kroneckerDense, kroneckerMacs, nearestKronecker, type KroneckerShape } from '../../src/decompose/kronecker-math.js';
import { kronSum, random } from './kronecker-fixtures.js';

/** ‖W − Ŵ‖² of the full Van Loan–Pitsianis fit, by building Ŵ */
async function bruteError(W: Float64Array, shape: KroneckerShape, terms: number): Promise<number> {
  const approx = kroneckerDense(await nearestKronecker(W, shape, terms));
  return W.reduce((a, w, i) => a + (w - approx[i]!) ** 2, 0);
}

describe('Kronecker shapes from a parameter budget', () => {
  it('every candidate meets the budget and uses its largest affordable term count', () => {
    for (const c of budgetCandidates(32, 48, 0.3)) {
      const per = c.shape.m1 * c.shape.n1 + c.shape.m2 * c.shape.n2;
      expect(c.terms * per).toBeLessThanOrEqual(0.3 * 32 * 48);
      expect((c.terms + 1) * per > 0.3 * 32 * 48 || c.terms === Math.min(c.shape.m1 * c.shape.n1, c.shape.m2 * c.shape.n2)).toBe(true);
    }
  });

  it('with maxCompute every candidate runs within that fraction of the dense multiply-adds, with the most terms that fit', () => {
    const all = budgetCandidates(32, 48, 0.6);
    const capped = budgetCandidates(32, 48, 0.6, { maxCompute: 0.5 });
    expect(capped.length).toBeGreaterThan(0);
    expect(capped.length).toBeLessThanOrEqual(all.length);
    for (const c of capped) {
      const cost = (t: number) => Math.min(kroneckerMacs(c.shape, t).aFirst, kroneckerMacs(c.shape, t).bFirst);
      expect(cost(c.terms)).toBeLessThanOrEqual(0.5 * 32 * 48);
      const uncapped = all.find((a) => a.shape.m1 === c.shape.m1 && a.shape.n1 === c.shape.n1)!;
      expect(c.terms === uncapped.terms || cost(c.terms + 1) > 0.5 * 32 * 48).toBe(true);
    }
    // hand check: 4×8 ⊗ 8×6 costs min(4·6·(8+8), 8·8·(6+4)) = 384 per term; the cap 768 allows 2
    expect(capped.find((c) => c.shape.m1 === 4 && c.shape.n1 === 8)?.terms).toBe(2);
  });

  it('finds the shape of a noisy A ⊗ B, and its error is the lowest of all candidates by brute force', async () => {
    const truth = { m1: 4, n1: 2, m2: 8, n2: 16 };
    const clean = kronSum(truth, 1, 5);
    const noise = random(clean.length, 77);
    const W = clean.map((w, i) => w + 1e-3 * noise[i]!);
    // 0.14·1024 = 143 params: one 4×2 ⊗ 8×16 term (136) fits, two 4×4 ⊗ 8×8 terms (160, also exact) do not
    const best = (await chooseShape(W, 32, 32, 0.14))!;
    expect(best.shape).toEqual(truth);
    expect(best.terms).toBe(1);
    const brute = await bruteError(W, best.shape, best.terms);
    expect(Math.abs(best.error - brute)).toBeLessThanOrEqual(1e-9 * brute); // the σ-tail formula equals the built Ŵ's error
    for (const c of budgetCandidates(32, 32, 0.14)) expect(await bruteError(W, c.shape, c.terms)).toBeGreaterThanOrEqual(brute * (1 - 1e-9));
  });

  it('finds the shape and the term count of an exact sum of three products', async () => {
    const truth = { m1: 8, n1: 4, m2: 4, n2: 8 };
    const W = kronSum(truth, 3, 9);
    const best = (await chooseShape(W, 32, 32, 0.2))!;
    expect(best.shape).toEqual(truth);
    expect(best.terms).toBe(3);
    expect(Math.sqrt(best.error / W.reduce((a, w) => a + w * w, 0))).toBeLessThan(1e-6);
  });

  it('given m1 or terms, searches only the rest; impossible constraints give no choice', async () => {
    const W = kronSum({ m1: 8, n1: 4, m2: 4, n2: 8 }, 3, 9);
    const withM1 = (await chooseShape(W, 32, 32, 0.2, { m1: 4 }))!;
    expect(withM1.shape.m1).toBe(4);
    const withTerms = (await chooseShape(W, 32, 32, 0.2, { terms: 1 }))!;
    expect(withTerms.terms).toBe(1);
    expect(await chooseShape(W, 32, 32, 0.01, { terms: 4 })).toBeUndefined();
  });
});
