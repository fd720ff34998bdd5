import { describe, expect, it } from 'vitest';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { modelSize } from '../../src/model/size.js';
import { seededRandom } from '../../src/util/random.js';
import { dequantizeMatrix, quantizeMatrix } from '../../src/quantize/grid.js';
import { gridSpec, type WeightQuantParams } from '../../src/quantize/params.js';
import { rtn } from '../../src/quantize/rtn.js';
import { cast } from '../../src/quantize/cast.js';
import { fromFloat32, toFloat32 } from '../../src/model/pack.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { singleGemm, singleMatMul, storiesLogits } from './models.js';
import { allClose, FIXTURES } from '../helpers.js';

const noProgress = { layer: () => {} };

/** ORT fuses int8 DequantizeLinear → MatMul into MatMulNBits with int8 activations unless told to keep float32 (accuracy level 0). */
const logits = (model: ReturnType<typeof readOnnx>) => storiesLogits(model, { batch: 2, seq: 40, seed: 4, session: { qdqMatMulNBitsAccuracyLevel: 0 } });

const cases: [string, WeightQuantParams][] = [
  ['int8 per-channel symmetric as DequantizeLinear', { bits: 8, granularity: 'channel', group_size: 128, symmetric: true, format: 'qdq', accuracy_level: 0 }],
  ['uint8 per-channel asymmetric as DequantizeLinear', { bits: 8, granularity: 'channel', group_size: 128, symmetric: false, format: 'qdq', accuracy_level: 0 }],
  ['int8 per-tensor as DequantizeLinear', { bits: 8, granularity: 'tensor', group_size: 128, symmetric: true, format: 'qdq', accuracy_level: 0 }],
  ['8-bit group 32 asymmetric as MatMulNBits', { bits: 8, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', accuracy_level: 0 }],
  ['8-bit group 64 symmetric as MatMulNBits', { bits: 8, granularity: 'group', group_size: 64, symmetric: true, format: 'matmulnbits', accuracy_level: 0 }],
  ['4-bit group 32 symmetric as MatMulNBits', { bits: 4, granularity: 'group', group_size: 32, symmetric: true, format: 'matmulnbits', accuracy_level: 0 }],
  ['4-bit group 16 asymmetric as MatMulNBits', { bits: 4, granularity: 'group', group_size: 16, symmetric: false, format: 'matmulnbits', accuracy_level: 0 }],
  ['3-bit group 32 asymmetric in a 4-bit container', { bits: 3, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', accuracy_level: 0 }],
  ['2-bit group 16 symmetric as 2-bit MatMulNBits', { bits: 2, granularity: 'group', group_size: 16, symmetric: true, format: 'matmulnbits', accuracy_level: 0 }],
  ['4-bit per-channel asymmetric in an 8-bit DequantizeLinear container', { bits: 4, granularity: 'channel', group_size: 128, symmetric: false, format: 'qdq', accuracy_level: 0 }],
  ['3-bit per-channel symmetric in an 8-bit DequantizeLinear container', { bits: 3, granularity: 'channel', group_size: 128, symmetric: true, format: 'qdq', accuracy_level: 0 }],
];

describe('quantized weights ONNX Runtime runs', () => {
  for (const [label, params] of cases) {
    it(`${label}: ORT output equals the model with the dequantized float weights`, async () => {
      const quantized = readOnnx(FIXTURES.stories);
      const reference = readOnnx(FIXTURES.stories);
      // stories' MLP inputs are 64 and 172 wide: 172 is not a multiple of 32, so groups take the 64-wide inputs
      const pick = (l: { name: string; inFeatures: number }) => l.name.startsWith('layers.') && (params.granularity !== 'group' || l.inFeatures % params.group_size === 0);
      const targets = linears(quantized).filter(pick);
      for (const layer of linears(reference).filter(pick)) {
        const W = readWeight(reference, layer);
        writeWeight(reference, layer, dequantizeMatrix(quantizeMatrix(W, layer.outFeatures, layer.inFeatures, gridSpec(params))));
      }
      await rtn.apply(quantized, { ...params, mse_clip: false }, { layers: targets, seed: 0, random: Math.random, progress: noProgress, where: 'passes[0]' });
      const ops = (quantized.graph.node ?? []).map((n) => n.op_type);
      const expectedOp = params.format === 'qdq' ? 'DequantizeLinear' : 'MatMulNBits';
      expect(ops.filter((o) => o === expectedOp)).toHaveLength(targets.length);
      const got = await logits(quantized);
      const want = await logits(reference);
      const c = allClose(got, want, 1e-5, 1e-5);
      expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5); // measured ≤ 1e-6
    });
  }

  const gemms: [string, Parameters<typeof singleGemm>[2]][] = [
    ['transB, bias [n]', { transB: true, biasDims: [48] }],
    ['W [k, n], bias [1, n], beta 0.5', { transB: false, beta: 0.5, biasDims: [1, 48] }],
    ['no bias', { transB: true }],
  ];
  for (const [label, shape] of gemms) {
    it(`Gemm (${label}) becomes MatMulNBits with its bias; ORT output equals the dequantized float Gemm`, async () => {
      const params: WeightQuantParams = { bits: 4, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', accuracy_level: 0 };
      const quantized = singleGemm(64, 48, shape);
      const reference = singleGemm(64, 48, shape);
      const [ref] = linears(reference);
      writeWeight(reference, ref!, dequantizeMatrix(quantizeMatrix(readWeight(reference, ref!), 48, 64, gridSpec(params))));
      await rtn.apply(quantized, { ...params, mse_clip: false }, { layers: linears(quantized), seed: 0, random: Math.random, progress: noProgress, where: 'passes[0]' });
      expect((quantized.graph.node ?? []).map((n) => n.op_type)).toEqual(['MatMulNBits']);
      const r = seededRandom(9);
      const x = new ort.Tensor('float32', Float32Array.from({ length: 5 * 64 }, () => r() * 2 - 1), [5, 64]);
      const run = async (m: typeof quantized) => (await (await sessionFromModel(m, { threads: 1 })).run({ x })).y!.data as Float32Array;
      const c = allClose(await run(quantized), await run(reference), 1e-5, 1e-5);
      expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5);
    });
  }

  it('a Gemm with alpha ≠ 1 is refused for MatMulNBits, naming the layer', async () => {
    const model = singleGemm(64, 48, { transB: true, alpha: 2 });
    const params = { bits: 4, granularity: 'group', group_size: 32, symmetric: true, format: 'matmulnbits', accuracy_level: 0, mse_clip: false } as const;
    await expect(rtn.apply(model, params, { layers: linears(model), seed: 0, random: Math.random, progress: noProgress, where: 'passes[0]' })).rejects.toThrow(/Gemm 'proj' has alpha 2; MatMulNBits has no output scale/);
  });

  it('int8 per-channel shrinks a 1536×576 weight ≥ 3.9×, 4-bit group 32 ≥ 6× (scales included)', async () => {
    for (const [params, factor] of [
      [{ bits: 8, granularity: 'channel', group_size: 128, symmetric: true, format: 'qdq', accuracy_level: 0 }, 3.9],
      [{ bits: 4, granularity: 'group', group_size: 32, symmetric: true, format: 'matmulnbits', accuracy_level: 0 }, 6],
    ] as [WeightQuantParams, number][]) {
      const model = singleMatMul(576, 1536);
      const [layer] = linears(model);
      await rtn.apply(model, { ...params, mse_clip: false }, { layers: [layer!], seed: 0, random: Math.random, progress: noProgress, where: 'passes[0]' });
      const stored = (model.graph.initializer ?? []).reduce((a, t) => a + model.tensor(t).data.byteLength, 0);
      expect(576 * 1536 * 4 / stored).toBeGreaterThanOrEqual(factor); // measured 3.97× and 6.40×
    }
  });
});

describe('quantize.cast', () => {
  for (const dtype of ['float16', 'bfloat16'] as const) {
    it(`${dtype} weights behind a Cast give the outputs of the rounded float32 model`, async () => {
      const model = readOnnx(FIXTURES.stories);
      const reference = readOnnx(FIXTURES.stories);
      const layers = linears(model);
      await cast.apply(model, { dtype }, { layers, seed: 0, random: Math.random, progress: noProgress, where: 'passes[0]' });
      const dt = dtype === 'float16' ? 10 : 16;
      for (const l of linears(reference)) writeWeight(reference, l, toFloat32(dt, fromFloat32(dt, readWeight(reference, l))));
      expect(modelSize(model).bytes_by_dtype[dtype]).toBe(layers.reduce((a, l) => a + l.outFeatures * l.inFeatures * 2, 0)); // every linear weight stored 16-bit
      const c = allClose(await logits(model), await logits(reference), 1e-5, 1e-5);
      expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-6);
      // 16-bit weights behind a Cast are still linear layers a later pass can read
      const after = linears(model);
      expect(after).toHaveLength(36);
      expect(readWeight(model, after[3]!)).toEqual(readWeight(reference, linears(reference)[3]!));
    });
  }
});
