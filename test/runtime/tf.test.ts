import { describe, expect, it } from 'vitest';
import { loadTf } from '../../src/runtime/tf.js';

describe('loadTf', () => {
  it('starts a backend (tfjs-node when it imports, else wasm or cpu) that computes gradients', async () => {
    const { tf, backend, fallback } = await loadTf();
    expect(['tensorflow', 'wasm', 'cpu']).toContain(backend);
    if (backend !== 'tensorflow') expect(fallback).toMatch(/tfjs-node unavailable/);
    // d/dx Σ x² = 2x
    const x = tf.tensor1d([1, -2, 3]);
    const g = tf.grad((v) => v.square().sum())(x);
    expect(Array.from(await g.data())).toEqual([2, -4, 6]);
  });
});
