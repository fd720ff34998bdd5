import { describe, expect, it } from 'vitest';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { upgradeOpset } from '../../src/model/opset-upgrade.js';
import { modelSize } from '../../src/model/size.js';
import { dequantizeMatrix, quantizeMatrix } from '../../src/quantize/grid.js';
import { gridSpec, quantizedBytes, type WeightQuantParams } from '../../src/quantize/params.js';
import { rtn } from '../../src/quantize/rtn.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { allClose, FIXTURES } from '../helpers.js';
import { singleGemm, singleMatMul, storiesLogits } from './models.js';

/**
 * Group sizes that do not divide the inputs: MatMulNBits pads the last block, blocked
 * DequantizeLinear (opset 21) has a shorter last block. Either way ONNX Runtime must compute what
 * the float model with the dequantized weights computes.
 */

const noProgress = { layer: () => {} };
const ctxFor = (model: Model) => ({ layers: linears(model), seed: 0, random: Math.random, progress: noProgress, where: 'passes[0]' });

/** y for 3 rows of seeded x, ORT at float32 accuracy (no int8 activations in fused QDQ MatMuls). */
async function outputs(model: Model, k: number): Promise<Float32Array> {
  const r = seededRandom(k);
  const x = new ort.Tensor('float32', Float32Array.from({ length: 3 * k }, () => r() * 2 - 1), [3, k]);
  const s = await sessionFromModel(model, { threads: 1, qdqMatMulNBitsAccuracyLevel: 0 });
  return (await s.run({ x })).y!.data as Float32Array;
}

/** The pass's model and the float model holding the weights it dequantizes to. */
async function quantizedAndReference(make: () => Model, params: WeightQuantParams): Promise<[Model, Model]> {
  const quantized = make();
  const reference = make();
  const [layer] = linears(reference);
  writeWeight(reference, layer!, dequantizeMatrix(quantizeMatrix(readWeight(reference, layer!), layer!.outFeatures, layer!.inFeatures, gridSpec(params))));
  await rtn.apply(quantized, { ...params, mse_clip: false }, ctxFor(quantized));
  return [quantized, reference];
}

const base = { granularity: 'group', accuracy_level: 0 } as const;
const forms: [string, Omit<WeightQuantParams, 'group_size' | 'granularity' | 'accuracy_level'>, string][] = [
  ['MatMulNBits 4-bit symmetric', { bits: 4, symmetric: true, format: 'matmulnbits' }, 'MatMulNBits'],
  ['MatMulNBits 3-bit asymmetric', { bits: 3, symmetric: false, format: 'matmulnbits' }, 'MatMulNBits'],
  ['MatMulNBits 2-bit asymmetric (four codes a byte)', { bits: 2, symmetric: false, format: 'matmulnbits' }, 'MatMulNBits'],
  ['blocked DequantizeLinear int4', { bits: 4, symmetric: true, format: 'qdq', opset: 21 }, 'DequantizeLinear'],
  ['blocked DequantizeLinear uint4', { bits: 4, symmetric: false, format: 'qdq', opset: 21 }, 'DequantizeLinear'],
  ['blocked DequantizeLinear int8', { bits: 8, symmetric: true, format: 'qdq', opset: 21 }, 'DequantizeLinear'],
];

describe('any number of inputs, any group size', () => {
  for (const [label, form, op] of forms) {
    it(`${label}: K = 172, 250, 3136 at group 16/32/64/128, ORT output equals the dequantized float model`, async () => {
      for (const k of [172, 250, 3136]) {
        for (const g of [16, 32, 64, 128]) {
          const params = { ...base, ...form, group_size: g } as WeightQuantParams;
          const [quantized, reference] = await quantizedAndReference(() => singleMatMul(k, 24), params);
          expect((quantized.graph.node ?? []).map((n) => n.op_type)).toContain(op);
          const c = allClose(await outputs(quantized, k), await outputs(reference, k), 1e-5, 1e-5);
          expect(c.relFro, `K ${k} group ${g}: ${c.worst}`).toBeLessThanOrEqual(1e-5); // measured ≤ 1.1e-6 (float32 sums over 3136 inputs in another order)
          // the file holds what quantizedBytes says: codes (padded for MatMulNBits) + scales + zero points
          const stored = (quantized.graph.initializer ?? []).reduce((a, t) => a + quantized.tensor(t).data.byteLength, 0);
          expect(stored, `K ${k} group ${g}`).toBe(quantizedBytes(24, k, params));
          expect(modelSize(quantized).params).toBe(24 * k);
        }
      }
    });
  }

  for (const [label, form] of forms.filter(([, f]) => f.format === 'qdq')) {
    it(`${label} on a Gemm with transB (blocks along axis 1): ORT equals the dequantized Gemm`, async () => {
      const params = { ...base, ...form, group_size: 32 } as WeightQuantParams;
      const [quantized, reference] = await quantizedAndReference(() => singleGemm(172, 24, { transB: true, biasDims: [24] }), params);
      const c = allClose(await outputs(quantized, 172), await outputs(reference, 172), 1e-5, 1e-5);
      expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-6);
    });
  }

  it('format qdq with groups on an opset-17 model is refused in one line unless opset: 21 is given', async () => {
    const model = singleMatMul(172, 24);
    const params = { ...base, bits: 4, symmetric: true, format: 'qdq', group_size: 32, mse_clip: false } as const;
    await expect(rtn.apply(model, params, ctxFor(model))).rejects.toThrow(/needs blocked DequantizeLinear \(ONNX opset 21\) and single-matmul.onnx imports opset 17; add opset: 21/);
  });

  it('raising stories260K from opset 17 to 21 rewrites its ReduceMeans and keeps its logits bit for bit', async () => {
    const model = readOnnx(FIXTURES.stories);
    const before = readOnnx(FIXTURES.stories);
    upgradeOpset(model, 21);
    expect(model.opset()).toBe(21);
    const reduces = (model.graph.node ?? []).filter((n) => n.op_type === 'ReduceMean');
    expect(reduces.length).toBeGreaterThan(0);
    for (const n of reduces) expect([n.input!.length, (n.attribute ?? []).some((a) => a.name === 'axes')]).toEqual([2, false]);
    const run = (m: Model) => storiesLogits(m, { batch: 2, seq: 20, seed: 4 });
    expect(await run(model)).toEqual(await run(before));
  });

  it('stories260K 4-bit group 32 quantizes all its block linears, down_proj (172 inputs) too, and ORT equals the dequantized model', async () => {
    const params: WeightQuantParams = { bits: 4, granularity: 'group', group_size: 32, symmetric: true, format: 'matmulnbits', accuracy_level: 0 };
    const quantized = readOnnx(FIXTURES.stories);
    const reference = readOnnx(FIXTURES.stories);
    const targets = linears(quantized).filter((l) => l.name.startsWith('layers.'));
    expect(targets.filter((l) => l.inFeatures % 32 !== 0).length).toBe(5); // the five down_proj
    for (const layer of linears(reference).filter((l) => l.name.startsWith('layers.'))) {
      writeWeight(reference, layer, dequantizeMatrix(quantizeMatrix(readWeight(reference, layer), layer.outFeatures, layer.inFeatures, gridSpec(params))));
    }
    await rtn.apply(quantized, { ...params, mse_clip: false }, { ...ctxFor(quantized), layers: targets });
    expect((quantized.graph.node ?? []).filter((n) => n.op_type === 'MatMulNBits')).toHaveLength(targets.length);
    const run = (m: Model) => storiesLogits(m, { batch: 2, seq: 40, seed: 4 });
    const c = allClose(await run(quantized), await run(reference), 1e-5, 1e-5);
    expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5);
  });
});
