import { describe, expect, it } from 'vitest';
import { allocate, type Option } from '../../src/quantize/allocate.js';
import { seededRandom } from '../../src/util/random.js';

/** Every one of the 4^4 allocations, the cheapest within the budget (ties: fewer bytes). */
function bruteForce(options: Option[][], budget: number): { cost: number; bytes: number } | undefined {
  let best: { cost: number; bytes: number } | undefined;
  for (let code = 0; code < 4 ** options.length; code++) {
    let [bytes, cost] = [0, 0];
    for (let l = 0, c = code; l < options.length; l++, c = Math.floor(c / 4)) {
      bytes += options[l]![c % 4]!.bytes;
      cost += options[l]![c % 4]!.cost;
    }
    if (bytes <= budget && (!best || cost < best.cost || (cost === best.cost && bytes < best.bytes))) best = { cost, bytes };
  }
  return best;
}

describe('budget allocator (multiple-choice knapsack)', () => {
  it('equals brute force on 4 layers × 4 choices, over 200 random tables and budgets', () => {
    const r = seededRandom(21);
    let feasible = 0;
    for (let trial = 0; trial < 200; trial++) {
      // more bytes usually cost less loss, with noise so options are not sorted
      const options = Array.from({ length: 4 }, () => {
        const size = 100 + Math.floor(r() * 900);
        return [2, 3, 4, 8].map((bits) => ({ bytes: Math.ceil((size * bits) / 8) + Math.floor(r() * 20), cost: (r() + 0.2) * 4 ** -bits * size }));
      });
      const least = options.reduce((a, o) => a + Math.min(...o.map((x) => x.bytes)), 0);
      const most = options.reduce((a, o) => a + Math.max(...o.map((x) => x.bytes)), 0);
      const budget = Math.floor(least * 0.95 + r() * (most - least * 0.95));
      const want = bruteForce(options, budget);
      const got = allocate(options, budget);
      if (!want) {
        expect(got).toBeUndefined();
        continue;
      }
      feasible++;
      expect(got).toBeDefined();
      expect(got!.picks).toHaveLength(4);
      const bytes = got!.picks.reduce((a, k, l) => a + options[l]![k]!.bytes, 0);
      const cost = got!.picks.reduce((a, k, l) => a + options[l]![k]!.cost, 0);
      expect(bytes).toBe(got!.bytes);
      expect(bytes).toBeLessThanOrEqual(budget);
      expect(cost).toBeCloseTo(want.cost, 12);
    }
    expect(feasible).toBeGreaterThan(150);
  });
});
