import { describe, expect, it } from 'vitest';
import { learningRate, MaskedAdam, type AdamSettings } from '../../../src/runtime/tfjs/optimizer.js';
import { loadTf } from '../../../src/runtime/tf.js';

const SETTINGS: AdamSettings = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, clip: 0, warmup: 0, schedule: 'constant', steps: 10 };

describe('masked Adam', () => {
  it('the first step moves every free weight by lr·sign(g) (Adam closed form) and masked ones not at all', async () => {
    const { tf } = await loadTf();
    const w = tf.variable(tf.tensor([0.5, 0, -1, 2]), true, 'adam_first_step');
    const mask = tf.tensor([1, 0, 1, 1]);
    const adam = new MaskedAdam(tf, new Map([['w', w]]), new Map([['w', mask]]), SETTINGS);
    adam.apply({ w: tf.tensor([0.3, 5, -2, 1e-3]) });
    const after = Array.from(w.dataSync());
    expect(after[0]).toBeCloseTo(0.5 - 0.1, 5);
    expect(after[1]).toBe(0);
    expect(after[2]).toBeCloseTo(-1 + 0.1, 5);
    expect(after[3]).toBeCloseTo(2 - 0.1, 4);
    adam.dispose();
  });

  it('pruned zeros stay exactly zero over many steps with clipping and weight decay', async () => {
    const { tf } = await loadTf();
    const init = Float32Array.from({ length: 64 }, (_, i) => (i % 4 < 2 ? 0 : Math.sin(i))); // a 2:4 pattern
    const w = tf.variable(tf.tensor(init), true, 'adam_masked');
    const mask = tf.tensor(Float32Array.from(init, (x) => (x === 0 ? 0 : 1)));
    const adam = new MaskedAdam(tf, new Map([['w', w]]), new Map([['w', mask]]), { ...SETTINGS, clip: 0.5, weightDecay: 0.01, steps: 30 });
    for (let s = 0; s < 30; s++) adam.apply({ w: tf.randomNormal([64], 0, 1, 'float32', s) });
    const after = w.dataSync();
    for (let i = 0; i < 64; i++) if (init[i] === 0) expect(Object.is(after[i], 0) || after[i] === 0).toBe(true);
    expect(Array.from(after).some((x, i) => init[i] !== 0 && x !== init[i])).toBe(true);
    adam.dispose();
  });

  it('a step leaves no tensor behind: the gradients it is given are disposed, masked or not', async () => {
    const { tf } = await loadTf();
    const w = tf.variable(tf.tensor([1, 0, 2]), true, 'adam_no_leak');
    const u = tf.variable(tf.tensor([3, 4]), true, 'adam_no_leak_u');
    const mask = tf.tensor([1, 0, 1]);
    const adam = new MaskedAdam(tf, new Map([['w', w], ['u', u]]), new Map([['w', mask]]), SETTINGS);
    adam.apply({ w: tf.tensor([1, 1, 1]), u: tf.tensor([1, 1]) });
    const alive = tf.memory().numTensors;
    for (let s = 0; s < 3; s++) adam.apply({ w: tf.tensor([1, 1, 1]), u: tf.tensor([1, 1]) });
    expect(tf.memory().numTensors).toBe(alive);
    adam.dispose();
  });

  it('clipping scales the gradient to the clip norm; state round-trips', async () => {
    const { tf } = await loadTf();
    const w = tf.variable(tf.tensor([1, 1]), true, 'adam_clip');
    const adam = new MaskedAdam(tf, new Map([['w', w]]), new Map(), { ...SETTINGS, clip: 1 });
    const { gradNorm } = adam.apply({ w: tf.tensor([3, 4]) });
    expect(gradNorm).toBeCloseTo(5, 5);
    const state = adam.state();
    // first moment after one step: (1 − β1)·g·(clip/‖g‖)
    expect(state.m.w![0]).toBeCloseTo(0.1 * 3 * 0.2, 6);
    const other = new MaskedAdam(tf, new Map([['w', w]]), new Map(), SETTINGS);
    other.restore(state);
    expect(other.state().m.w).toEqual(state.m.w);
    expect(other.step).toBe(1);
  });

  it('learning-rate schedules: linear warm-up, then constant, linear or cosine decay to 0', () => {
    const s = { ...SETTINGS, lr: 1, warmup: 4, steps: 14 };
    expect(learningRate(s, 0)).toBeCloseTo(0.25);
    expect(learningRate(s, 3)).toBeCloseTo(1);
    expect(learningRate({ ...s, schedule: 'constant' }, 13)).toBe(1);
    expect(learningRate({ ...s, schedule: 'linear' }, 9)).toBeCloseTo(0.5);
    expect(learningRate({ ...s, schedule: 'cosine' }, 9)).toBeCloseTo(0.5);
    expect(learningRate({ ...s, schedule: 'cosine' }, 14)).toBeCloseTo(0);
  });
});
