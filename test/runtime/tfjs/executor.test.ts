import { describe, expect, it } from 'vitest';
import { loadModel } from '../../../src/model/load.js';
import type { Model } from '../../../src/model/model.js';
import { OnnxExecutor } from '../../../src/runtime/tfjs/executor.js';
import { convNet } from '../../../fixtures/generate-convnet.js';
import { FIXTURES, itWithShared, SHARED_MODELS } from '../../helpers.js';
import { bothOutputs, cifarImage, expectClose, mnistDigit, shakespeareTokens, storiesTokens, syntheticImage, type Feed } from './helpers.js';

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

describe('tfjs executor matches ONNX Runtime on the real models', () => {
  it('stories260K exported ONNX on TinyStories tokens', async () => {
    await parity(loadModel(FIXTURES.stories), { name: 'input_ids', dims: [2, 64], data: storiesTokens(2, 64) }); // measured 2.5e-7
  });

  it('stories260K built from safetensors (Split, Less, Identity)', async () => {
    await parity(loadModel(FIXTURES.storiesSafetensors), { name: 'input_ids', dims: [2, 64], data: storiesTokens(2, 64) });
  });

  itWithShared('shakespeare-char on validation characters', async () => {
    await parity(loadModel(SHARED_MODELS.shakespeare), { name: 'input_ids', dims: [2, 64], data: shakespeareTokens(2, 64) });
  });

  it('mnist-8 on a test digit (SAME_UPPER Conv, MaxPool, initializers listed as inputs)', async () => {
    const model = loadModel(FIXTURES.mnist);
    for (const i of [0, 1]) await parity(model, { name: 'Input3', dims: [1, 1, 28, 28], data: mnistDigit(i) });
  });

  itWithShared('squeezenet-cifar10 on a test image (NHWC transpose, padded Conv, Concat, GlobalAveragePool)', async () => {
    await parity(loadModel(SHARED_MODELS.squeezenet), { name: 'input_1', dims: [1, 32, 32, 3], data: cifarImage(0) });
  });

  it('the generated SqueezeNet-style convnet on two images (NHWC transpose, padded Conv, Concat, GlobalAveragePool, Squeeze)', async () => {
    const image = Float32Array.from([...syntheticImage(1), ...syntheticImage(2)]);
    await parity(convNet('convnet.onnx'), { name: 'input_1', dims: [2, 32, 32, 3], data: image });
  });

  it('a second feed shape reuses nothing stale from the first', async () => {
    const model = loadModel(FIXTURES.stories);
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

describe('tfjs executor matches ONNX Runtime on pare outputs (stories260K)', async () => {
  const { linears } = await import('../../../src/model/linears.js');
  const { rtn } = await import('../../../src/quantize/rtn.js');
  const { w8a8 } = await import('../../../src/quantize/w8a8.js');
  const { cast } = await import('../../../src/quantize/cast.js');
  const { svdPass } = await import('../../../src/decompose/svd.js');
  const { kronecker } = await import('../../../src/decompose/kronecker.js');
  const ctx = (layers: ReturnType<typeof linears>) => ({ layers, seed: 0, random: Math.random, progress: { layer: () => {} }, where: 'passes[0]' });
  const blocks = (m: Model) => linears(m).filter((l) => l.name.startsWith('layers.'));
  const feed: Feed = { name: 'input_ids', dims: [2, 48], data: storiesTokens(2, 48) };
  // ORT fuses int8 DequantizeLinear → MatMul with int8 activations unless kept in float32
  const floatOrt = { qdqMatMulNBitsAccuracyLevel: 0 as const };

  const cases: [string, (m: Model) => Promise<unknown>, string][] = [
    ['rtn 4-bit group 32 as MatMulNBits', (m) => rtn.apply(m, { bits: 4, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', accuracy_level: 0, mse_clip: false }, ctx(blocks(m).filter((l) => l.inFeatures % 32 === 0))), 'MatMulNBits'],
    ['rtn 2-bit group 32 as MatMulNBits, down_proj in a padded last block', (m) => rtn.apply(m, { bits: 2, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', accuracy_level: 0, mse_clip: false }, ctx(blocks(m))), 'MatMulNBits'],
    ['rtn 8-bit group 64 as MatMulNBits', (m) => rtn.apply(m, { bits: 8, granularity: 'group', group_size: 64, symmetric: true, format: 'matmulnbits', accuracy_level: 0, mse_clip: false }, ctx(blocks(m).filter((l) => l.inFeatures % 64 === 0))), 'MatMulNBits'],
    ['rtn int8 per-channel as DequantizeLinear', (m) => rtn.apply(m, { bits: 8, granularity: 'channel', group_size: 128, symmetric: true, format: 'qdq', accuracy_level: 0, mse_clip: false }, ctx(blocks(m))), 'DequantizeLinear'],
    ['w8a8 per-token (MatMulInteger, Round, Clip, ReduceMax)', (m) => w8a8.apply(m, { epsilon: 1e-8 }, ctx(blocks(m))), 'MatMulInteger'],
    ['float16 weights behind Cast', (m) => cast.apply(m, { dtype: 'float16' }, ctx(linears(m))), 'Cast'],
    ['svd rank 16 (two MatMuls)', (m) => svdPass.apply(m, svdPass.params.parse({ rank: 16, activation_aware: false }), ctx(blocks(m))), 'MatMul'],
    ['kronecker with permutations (Gather on activations, Sum)', (m) => kronecker.apply(m, kronecker.params.parse({ terms: 2, permutation_rounds: 3 }), ctx(blocks(m).filter((l) => /mlp\.(up|gate)_proj$/.test(l.name)))), 'Gather'],
    ['kronecker dense_at_load with permutations (expansion MatMul of two factors, Gathers on the weight)', (m) => kronecker.apply(m, kronecker.params.parse({ terms: 2, permutation_rounds: 3, runtime: 'dense_at_load' }), ctx(blocks(m).filter((l) => /mlp\.(up|gate)_proj$/.test(l.name)))), 'Gather'],
  ];
  for (const [label, apply, op] of cases) {
    it(label, async () => {
      const model = loadModel(FIXTURES.stories);
      const count = () => (model.graph.node ?? []).filter((n) => n.op_type === op).length;
      const before = count();
      await apply(model);
      expect(count()).toBeGreaterThan(before); // the rewrite is really there
      await parity(model, feed, floatOrt);
    });
  }
});
