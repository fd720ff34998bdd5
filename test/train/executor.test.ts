import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/model/load.js';
import type { Model } from '../../src/model/model.js';
import { OnnxExecutor } from '../../src/train/executor.js';
import { sharedPath, SHARED_MODELS } from '../helpers.js';
import { bothOutputs, cifarImage, expectClose, mnistDigit, shakespeareTokens, storiesTokens, type Feed } from './helpers.js';

/** Forward parity of the tfjs executor with ONNX Runtime, relative error ≤ 1e-4, on real inputs. */
const REL = 1e-4;

async function parity(model: Model, feed: Feed, ortOpts = {}): Promise<number> {
  const exec = await OnnxExecutor.create(model);
  try {
    const { got, ref } = await bothOutputs(exec, model, feed, ortOpts);
    const c = expectClose(got, ref, REL);
    expect(c.ok, `relFro ${c.relFro}; ${c.worst}`).toBe(true);
    return c.relFro;
  } finally {
    exec.dispose();
  }
}

describe('tfjs executor matches ONNX Runtime on the shared models', () => {
  it('stories260K exported ONNX on TinyStories tokens', async () => {
    await parity(loadModel(SHARED_MODELS.stories), { name: 'input_ids', dims: [2, 64], data: storiesTokens(2, 64) }); // measured 2.5e-7
  });

  it('stories260K built from safetensors (Split, Less, Identity)', async () => {
    await parity(loadModel(sharedPath('models/stories260K/model.safetensors')), { name: 'input_ids', dims: [2, 64], data: storiesTokens(2, 64) });
  });

  it('shakespeare-char on validation characters', async () => {
    await parity(loadModel(SHARED_MODELS.shakespeare), { name: 'input_ids', dims: [2, 64], data: shakespeareTokens(2, 64) });
  });

  it('mnist-8 on a test digit (SAME_UPPER Conv, MaxPool, initializers listed as inputs)', async () => {
    const model = loadModel(SHARED_MODELS.mnist);
    for (const i of [0, 1]) await parity(model, { name: 'Input3', dims: [1, 1, 28, 28], data: mnistDigit(i) });
  });

  it('squeezenet-cifar10 on a test image (NHWC transpose, padded Conv, Concat, GlobalAveragePool)', async () => {
    await parity(loadModel(SHARED_MODELS.squeezenet), { name: 'input_1', dims: [1, 32, 32, 3], data: cifarImage(0) });
  });

  it('a second feed shape reuses nothing stale from the first', async () => {
    const model = loadModel(SHARED_MODELS.stories);
    const exec = await OnnxExecutor.create(model);
    try {
      for (const [B, T] of [[1, 8], [3, 20], [1, 8]] as const) {
        const { got, ref } = await bothOutputs(exec, model, { name: 'input_ids', dims: [B, T], data: storiesTokens(B, T) });
        expect(expectClose(got, ref, REL).ok).toBe(true);
      }
    } finally {
      exec.dispose();
    }
  });
});
