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

  it('on wasm, Identity (tfjs saving a tensor for the backward pass, tf.clone) shares the buffer and frees it with the last holder', async () => {
    const { tf, backend } = await loadTf();
    if (backend !== 'wasm') return;
    const data = () => tf.engine().backend.numDataIds();
    const before = data();
    const x = tf.tensor1d([1.5, -2, 3]);
    const y = tf.clone(x);
    expect(data()).toBe(before + 1);
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1.5, -2, 3]);
    const v = tf.variable(y);
    const next = tf.tensor1d([7, 8, 9]);
    v.assign(next);
    next.dispose();
    expect(Array.from(y.dataSync())).toEqual([1.5, -2, 3]);
    y.dispose();
    v.dispose();
    expect(data()).toBe(before);
  });
});
