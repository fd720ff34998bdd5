import { describe, expect, it } from 'vitest';
import { paretoFront } from '../../src/report/pareto.js';

describe('paretoFront', () => {
  it('keeps exactly the points no other point is at least as small and as good as (perplexity: lower is better)', () => {
    const points = [
      { id: 'a', size: 100, quality: 5 }, // smallest: on the front
      { id: 'b', size: 200, quality: 4 }, // bigger but better: on
      { id: 'c', size: 200, quality: 4.5 }, // b is as small and better: off
      { id: 'd', size: 300, quality: 4 }, // b is smaller and as good: off
      { id: 'e', size: 400, quality: 3 }, // best quality: on
      { id: 'f', size: 150, quality: 6 }, // a is smaller and better: off
    ];
    expect([...paretoFront(points, 'lower')].sort()).toEqual(['a', 'b', 'e']);
  });

  it('accuracy: higher is better', () => {
    const points = [
      { id: 'a', size: 100, quality: 0.9 },
      { id: 'b', size: 200, quality: 0.95 },
      { id: 'c', size: 300, quality: 0.94 },
    ];
    expect([...paretoFront(points, 'higher')].sort()).toEqual(['a', 'b']);
  });

  it('equal points are all on the front; a point without quality is off while others have one', () => {
    const points = [
      { id: 'a', size: 100, quality: 5 },
      { id: 'b', size: 100, quality: 5 },
      { id: 'c', size: 50 },
    ];
    expect([...paretoFront(points, 'lower')].sort()).toEqual(['a', 'b']);
  });

  it('with no quality at all, the smallest points form the front', () => {
    expect([...paretoFront([{ id: 'a', size: 3 }, { id: 'b', size: 2 }, { id: 'c', size: 2 }], 'lower')].sort()).toEqual(['b', 'c']);
  });
});
