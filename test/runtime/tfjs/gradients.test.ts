import type * as tfjs from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { readWeight, writeWeight } from '../../../src/model/linear-weights.js';
import { linears, type LinearLayer } from '../../../src/model/linears.js';
import { loadModel } from '../../../src/model/load.js';
import type { Model } from '../../../src/model/model.js';
import { transpose2d } from '../../../src/model/ndarray.js';
import { seededRandom } from '../../../src/util/random.js';
import { cast } from '../../../src/quantize/cast.js';
import { dequantizeMatrix, quantizeMatrix } from '../../../src/quantize/grid.js';
import { gridSpec, type WeightQuantParams } from '../../../src/quantize/params.js';
import { rtn } from '../../../src/quantize/rtn.js';
import { OnnxExecutor } from '../../../src/runtime/tfjs/executor.js';
import { FIXTURES } from '../../helpers.js';
import { mnistDigit, storiesTokens } from './helpers.js';

type Loss = (tf: OnnxExecutor['tf'], exec: OnnxExecutor) => tfjs.Scalar;

/** mean next-token cross-entropy of stories260K on real tokens */
function lmLoss(B: number, T: number): Loss {
  const ids = storiesTokens(B, T + 1);
  const input = Int32Array.from({ length: B * T }, (_, i) => ids[Math.floor(i / T) * (T + 1) + (i % T)]!);
  const target = Int32Array.from({ length: B * T }, (_, i) => ids[Math.floor(i / T) * (T + 1) + (i % T) + 1]!);
  return (tf, exec) => {
    const logits = exec.run({ input_ids: tf.tensor(input, [B, T], 'int32') }).logits!;
    const logp = tf.logSoftmax(tf.reshape(logits, [B * T, -1]));
    return tf.neg(tf.mean(tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(target, 'int32'), logp.shape[1]!)), 1))) as tfjs.Scalar;
  };
}

/** ⟨R, output⟩ with a seeded R, on one MNIST digit */
function mnistLoss(): Loss {
  const r = seededRandom(3);
  const R = Float32Array.from({ length: 10 }, () => r() - 0.5);
  return (tf, exec) => {
    const y = Object.values(exec.run({ Input3: tf.tensor(mnistDigit(0), [1, 1, 28, 28]) }))[0]!;
    return tf.sum(tf.mul(y, tf.tensor(R, [1, 10]))) as tfjs.Scalar;
  };
}

function gradients(exec: OnnxExecutor, loss: Loss): Map<string, Float32Array> {
  const tf = exec.tf;
  const { grads, value } = tf.variableGrads(() => loss(tf, exec), [...exec.variables.values()]);
  const out = new Map<string, Float32Array>();
  for (const [name, v] of exec.variables) out.set(name, grads[v.name]!.dataSync() as Float32Array);
  tf.dispose([...Object.values(grads), value]);
  return out;
}

function lossAt(exec: OnnxExecutor, loss: Loss): number {
  return exec.tf.tidy(() => loss(exec.tf, exec).dataSync()[0]!);
}

/**
 * Central differences (L(w + ε) − L(w − ε)) / 2ε in float32 at the coordinates with the largest
 * |gradient| among a seeded sample (small gradients would test only float noise).
 */
function checkAgainstFiniteDifferences(exec: OnnxExecutor, loss: Loss, eps: number, coords = 3): number {
  const tf = exec.tf;
  const g = gradients(exec, loss);
  let worst = 0;
  for (const [name, v] of exec.variables) {
    const grad = g.get(name)!;
    const r = seededRandom(name.length);
    const sample = Array.from({ length: 64 }, () => Math.floor(r() * grad.length));
    const picks = [...new Set(sample)].sort((a, b) => Math.abs(grad[b]!) - Math.abs(grad[a]!)).slice(0, coords);
    const maxG = grad.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    for (const i of picks) {
      const w = v.dataSync() as Float32Array;
      const at = (delta: number) => {
        const moved = w.slice();
        moved[i] = w[i]! + delta;
        v.assign(tf.tensor(moved, v.shape));
        return lossAt(exec, loss);
      };
      const fd = (at(eps) - at(-eps)) / (2 * eps);
      v.assign(tf.tensor(w, v.shape));
      const err = Math.abs(grad[i]! - fd);
      worst = Math.max(worst, err / Math.max(Math.abs(fd), 1e-12));
      expect(err, `${name}[${i}]: autodiff ${grad[i]}, finite difference ${fd}`).toBeLessThanOrEqual(2e-2 * Math.abs(fd) + 1e-3 * maxG);
    }
  }
  return worst;
}

describe('executor gradients equal central finite differences', () => {
  it('stories260K: embedding (Gather), RMSNorm weights, attention and MLP projections through Softmax', async () => {
    const names = new Set(['model.embed_tokens.weight', 'model.layers.1.input_layernorm.weight', 'model.norm.weight', 'onnx::MatMul_1165', 'onnx::MatMul_1168']);
    const exec = await OnnxExecutor.create(loadModel(FIXTURES.stories), { trainable: (n) => names.has(n) });
    try {
      expect([...exec.variables.keys()].sort()).toEqual([...names].sort());
      expect(checkAgainstFiniteDifferences(exec, lmLoss(2, 24), 1e-2)).toBeLessThan(2e-2); // measured worst 1.9e-3
    } finally {
      exec.dispose();
    }
  });

  it('mnist-8: both Conv filters (the wasm-safe filter gradient) through Relu and MaxPool', async () => {
    const names = new Set(['Parameter5', 'Parameter87', 'Parameter193']);
    const exec = await OnnxExecutor.create(loadModel(FIXTURES.mnist), { trainable: (n) => names.has(n) });
    try {
      expect(checkAgainstFiniteDifferences(exec, mnistLoss(), 1e-3)).toBeLessThan(2e-2); // measured worst 1.3e-3
    } finally {
      exec.dispose();
    }
  });
});

const noProgress = { layer: () => {} };
const ctx = (layers: LinearLayer[]) => ({ layers, seed: 0, random: Math.random, progress: noProgress, where: 'passes[0]' });

/** stories260K with the 64-wide block projections quantized, and its float twin holding the dequantized weights */
async function quantizedPair(params: WeightQuantParams): Promise<{ quantized: Model; float: Model; layers: LinearLayer[] }> {
  const quantized = loadModel(FIXTURES.stories);
  const float = loadModel(FIXTURES.stories);
  const pick = (l: LinearLayer) => /^layers\.[01]\./.test(l.name) && l.inFeatures === 64;
  const layers = linears(float).filter(pick);
  for (const l of layers) writeWeight(float, l, dequantizeMatrix(quantizeMatrix(readWeight(float, l), l.outFeatures, l.inFeatures, gridSpec(params))));
  await rtn.apply(quantized, { ...params, mse_clip: false }, ctx(linears(quantized).filter(pick)));
  return { quantized, float, layers };
}

/** integer initializers that hold weight codes (the fake-quantized ones) */
function codeNames(model: Model): string[] {
  return (model.graph.node ?? []).filter((n) => n.op_type === 'DequantizeLinear' || n.op_type === 'MatMulNBits').map((n) => n.input![n.op_type === 'MatMulNBits' ? 1 : 0]!);
}

describe('straight-through fake quantization', () => {
  for (const [label, params] of [
    ['int8 per-channel DequantizeLinear', { bits: 8, granularity: 'channel', group_size: 128, symmetric: true, format: 'qdq', accuracy_level: 0 }],
    ['4-bit group 32 asymmetric MatMulNBits', { bits: 4, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', accuracy_level: 0 }],
  ] as [string, WeightQuantParams][]) {
    it(`${label}: the gradient of a fake-quantized weight equals the float weight's at the dequantized point`, async () => {
      const { quantized, float, layers } = await quantizedPair(params);
      const codes = codeNames(quantized);
      const floatNames = layers.map((l) => l.node.input![1]!);
      expect(codes).toHaveLength(floatNames.length);
      const eq = await OnnxExecutor.create(quantized, { trainable: (n) => codes.includes(n) });
      const ef = await OnnxExecutor.create(float, { trainable: (n) => floatNames.includes(n) });
      try {
        const loss = lmLoss(2, 16);
        const gq = gradients(eq, loss);
        const gf = gradients(ef, loss);
        codes.forEach((c, k) => {
          const l = layers[k]!;
          const got = gq.get(c)!;
          // MatMulNBits' variable is W [N, K]; the MatMul weight is [K, N]
          const want = params.format === 'matmulnbits' ? transpose2d(gf.get(floatNames[k]!)!, l.inFeatures, l.outFeatures) : gf.get(floatNames[k]!)!;
          let num = 0;
          let den = 0;
          for (let i = 0; i < want.length; i++) {
            num += (got[i]! - want[i]!) ** 2;
            den += want[i]! ** 2;
          }
          expect(Math.sqrt(num / den), c).toBeLessThanOrEqual(1e-5);
        });
      } finally {
        eq.dispose();
        ef.dispose();
      }
    });
  }
});

describe('writeBack', () => {
  function snapshot(model: Model): Map<string, Uint8Array> {
    return new Map((model.graph.initializer ?? []).map((t) => [t.name!, model.tensor(t.name!).data.slice()]));
  }

  async function untouched(model: Model, trainable: (n: string) => boolean): Promise<number> {
    const before = snapshot(model);
    const exec = await OnnxExecutor.create(model, { trainable });
    const n = exec.variables.size;
    exec.writeBack(model);
    exec.dispose();
    const after = snapshot(model);
    expect([...after.keys()]).toEqual([...before.keys()]);
    for (const [name, bytes] of before) expect(Buffer.compare(Buffer.from(after.get(name)!), Buffer.from(bytes)), name).toBe(0);
    return n;
  }

  it('of an untouched executor leaves float32, float16, int8 and packed 4-bit initializers byte-identical', async () => {
    const isFloat = (m: Model) => (n: string) => [1, 10].includes(m.initializer(n)?.data_type ?? 0);
    const plain = loadModel(FIXTURES.stories);
    expect(await untouched(plain, isFloat(plain))).toBeGreaterThan(30);

    const half = loadModel(FIXTURES.stories);
    await cast.apply(half, { dtype: 'float16' }, ctx(linears(half)));
    expect(await untouched(half, isFloat(half))).toBeGreaterThan(30);

    for (const params of [
      { bits: 8, granularity: 'channel', group_size: 128, symmetric: false, format: 'qdq', accuracy_level: 0 },
      { bits: 4, granularity: 'group', group_size: 16, symmetric: true, format: 'matmulnbits', accuracy_level: 0 },
    ] as WeightQuantParams[]) {
      const { quantized } = await quantizedPair(params);
      const codes = codeNames(quantized);
      expect(await untouched(quantized, (n) => codes.includes(n) || isFloat(quantized)(n))).toBeGreaterThan(codes.length);
    }
  });

  it('re-quantizes a moved weight onto its own grid', async () => {
    const { quantized } = await quantizedPair({ bits: 8, granularity: 'channel', group_size: 128, symmetric: true, format: 'qdq', accuracy_level: 0 });
    const code = codeNames(quantized)[0]!;
    const before = new Int8Array(quantized.tensor(code).data.slice().buffer);
    const exec = await OnnxExecutor.create(quantized, { trainable: (n) => n === code });
    const v = exec.variables.get(code)!;
    const dq = exec.tf.tidy(() => Object.values(exec.run({ input_ids: exec.tf.tensor([[1, 2]], [1, 2], 'int32') }))[0]!.dataSync());
    expect(dq.length).toBe(1024);
    // move every weight by +0.6 of its channel step: codes go up by one (saturating at 127)
    const scale = quantized.tensor(quantized.graph.node!.find((n) => n.input![0] === code)!.input![1]!);
    const s = new Float32Array(scale.data.slice().buffer);
    const [K, N] = quantized.tensor(code).dims as [number, number];
    const w = v.dataSync() as Float32Array;
    v.assign(exec.tf.tensor(w.map((x, i) => x + 0.6 * s[s.length === 1 ? 0 : i % N]!), v.shape));
    exec.writeBack(quantized);
    exec.dispose();
    const after = new Int8Array(quantized.tensor(code).data.slice().buffer);
    expect(after.length).toBe(K * N);
    for (let i = 0; i < after.length; i++) expect(after[i]).toBe(Math.min(before[i]! + 1, 127));
  });
});
