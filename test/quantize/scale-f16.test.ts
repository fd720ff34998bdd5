import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/model/dtype.js';
import { readWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { decodeModelProto, encodeInline } from '../../src/model/onnx-io.js';
import { float16ToFloat32, float32ToFloat16 } from '../../src/model/pack.js';
import { emitMatMulNBits } from '../../src/quantize/emit.js';
import { groupCount, quantizeMatrix, quantizeValue, storedScale, type GridSpec } from '../../src/quantize/grid.js';
import { quantizedBytes, type WeightQuantParams } from '../../src/quantize/params.js';
import { rtn } from '../../src/quantize/rtn.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { tempDir } from '../helpers.js';
import { singleMatMul } from './models.js';

/** MatMulNBits with float16 scales behind a Cast to float, float32 activations. */

const [K, N] = [172, 24];
const spec: GridSpec = { bits: 4, granularity: { kind: 'group', size: 32 }, symmetric: false, mseClip: true, scaleDtype: 'float16' };

function quantized(scaleDtype: 'float32' | 'float16'): { model: Model; m: ReturnType<typeof quantizeMatrix> } {
  const model = singleMatMul(K, N);
  const [layer] = linears(model);
  const m = quantizeMatrix(readWeight(model, layer!), N, K, spec);
  emitMatMulNBits(model, layer!, m, 0, { scaleDtype });
  return { model, m };
}

async function outputs(model: Model): Promise<Float32Array> {
  const r = seededRandom(8);
  const x = new ort.Tensor('float32', Float32Array.from({ length: 7 * K }, () => r() * 2 - 1), [7, K]);
  return (await (await sessionFromModel(model, { threads: 1 })).run({ x })).y!.data as Float32Array;
}

describe('float16 MatMulNBits scales', () => {
  it('the scales are float16 values and the codes are chosen against them (round to nearest of w / s16)', () => {
    const model = singleMatMul(K, N);
    const W = readWeight(model, linears(model)[0]!);
    const m = quantizeMatrix(W, N, K, spec);
    expect(Array.from(float16ToFloat32(float32ToFloat16(m.scales)))).toEqual(Array.from(m.scales));
    const G = groupCount(K, 32);
    for (let r = 0; r < N; r++) for (let j = 0; j < K; j++) expect(m.q[r * K + j]).toBe(quantizeValue(W[r * K + j]!, m.scales[r * G + Math.floor(j / 32)]!, m.zeros[r * G + Math.floor(j / 32)]!, 4));
    // float16's range: a tiny scale does not become 0, a huge one does not become ∞
    expect(storedScale(1e-12, 'float16')).toBe(2 ** -24);
    expect(storedScale(1e9, 'float16')).toBe(65504);
  });

  it('a float16 initializer and a Cast to float feed MatMulNBits; ONNX Runtime output is bit-equal to the float32-scale model with the same scales, and its optimizer folds the Cast', async () => {
    const half = quantized('float16');
    const full = quantized('float32');
    expect((half.model.graph.node ?? []).map((n) => n.op_type)).toEqual(['Cast', 'MatMulNBits']);
    const scales = (half.model.graph.initializer ?? []).find((t) => t.name?.endsWith('weight_scales_f16'));
    expect(scales?.data_type).toBe(DataType.FLOAT16);
    expect(Array.from(await outputs(half.model))).toEqual(Array.from(await outputs(full.model)));

    const { dir, cleanup } = tempDir();
    try {
      const path = join(dir, 'optimized.onnx');
      await ort.InferenceSession.create(encodeInline(half.model), { optimizedModelFilePath: path, graphOptimizationLevel: 'basic', logSeverityLevel: 4 });
      const optimized = decodeModelProto(readFileSync(path), path);
      expect((optimized.graph?.node ?? []).map((n) => n.op_type)).toEqual(['MatMulNBits']);
      expect(optimized.graph?.initializer?.find((t) => t.name === half.model.graph.node![1]!.input![2])?.data_type).toBe(DataType.FLOAT);
    } finally {
      cleanup();
    }
  });

  it('stored bytes are what quantizedBytes counts: 2 bytes a scale', () => {
    const { model } = quantized('float16');
    const stored = (model.graph.initializer ?? []).reduce((a, t) => a + (t.raw_data?.byteLength ?? 0), 0);
    const p: WeightQuantParams = { bits: 4, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', accuracy_level: 0, scale_dtype: 'float16' };
    expect(stored).toBe(quantizedBytes(N, K, p));
    expect(quantizedBytes(N, K, { ...p, scale_dtype: 'float32' }) - stored).toBe(N * groupCount(K, 32) * 2);
  });

  it('scale_dtype float16 outside format matmulnbits is a recipe error naming the field', () => {
    const r = rtn.params.safeParse({ bits: 8, granularity: 'channel', format: 'qdq', scale_dtype: 'float16' });
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => i.path.join('.'))).toContain('scale_dtype');
  });
});

describe('float16 scales and the tfjs runtime', () => {
  it('training a MatMulNBits whose scales sit behind a Cast is a user error naming the node and the fix', async () => {
    const { loadTf } = await import('../../src/runtime/tf.js');
    const { createTrainables } = await import('../../src/runtime/tfjs/trainables.js');
    const { UserError } = await import('../../src/errors.js');
    const { tf } = await loadTf();
    const { model } = quantized('float16');
    const codes = model.graph.node![1]!.input![1]!;
    let error: unknown;
    try {
      createTrainables(tf, model, (name) => name === codes);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UserError);
    expect((error as Error).message).toMatch(/MatMulNBits '\/proj\/MatMul\/MatMulNBits' computes its codes or scales.*distill before quantizing/);
  });
});
