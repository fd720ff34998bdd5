import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/model/dtype.js';
import { readWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { decodeModelProto, encodeInline } from '../../src/model/onnx-io.js';
import { modelSize } from '../../src/model/size.js';
import { emitMatMulNBits } from '../../src/quantize/emit.js';
import { quantizeMatrix } from '../../src/quantize/grid.js';
import { packUint3, unpackUint3 } from '../../src/quantize/pack3.js';
import { quantizedBytes, type WeightQuantParams } from '../../src/quantize/params.js';
import { gptq } from '../../src/quantize/gptq.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { tempDir } from '../helpers.js';
import { singleMatMul } from './models.js';

/** 3-bit MatMulNBits codes packed 8 per 3 bytes, rebuilt into the 4-bit container by a constant subgraph. */

const [K, N] = [172, 24];

function quantized(symmetric: boolean, packed3: boolean): Model {
  const model = singleMatMul(K, N);
  const [layer] = linears(model);
  const m = quantizeMatrix(readWeight(model, layer!), N, K, { bits: 3, granularity: { kind: 'group', size: 32 }, symmetric });
  emitMatMulNBits(model, layer!, m, 0, { packed3, scaleDtype: 'float16' });
  return model;
}

async function outputs(model: Model): Promise<Float32Array> {
  const r = seededRandom(4);
  const x = new ort.Tensor('float32', Float32Array.from({ length: 9 * K }, () => r() * 2 - 1), [9, K]);
  return (await (await sessionFromModel(model, { threads: 1 })).run({ x })).y!.data as Float32Array;
}

describe('packed 3-bit MatMulNBits codes', () => {
  it('codes 0..7 pack to v = Σ c_i·8^i = 0xFAC688, low byte first; pack then unpack is the identity', () => {
    expect(Array.from(packUint3(Uint8Array.of(0, 1, 2, 3, 4, 5, 6, 7)))).toEqual([0x88, 0xc6, 0xfa]);
    const r = seededRandom(2);
    const codes = Uint8Array.from({ length: 8 * 37 }, () => Math.floor(r() * 8));
    expect(Array.from(unpackUint3(packUint3(codes)))).toEqual(Array.from(codes));
  });

  for (const symmetric of [false, true]) {
    it(`${symmetric ? 'symmetric' : 'asymmetric'} 3-bit g32, K = 172: ONNX Runtime output bit-identical to the 4-bit container, and its optimizer folds the subgraph into the lone MatMulNBits`, async () => {
      const packed = quantized(symmetric, true);
      const ops = (packed.graph.node ?? []).map((n) => n.op_type);
      expect(ops).toEqual(['Cast', 'MatMul', 'Div', 'Mod', 'MatMul', ...(symmetric ? ['Add'] : []), 'Cast', 'Reshape', 'Cast', 'MatMulNBits']);
      expect(Array.from(await outputs(packed))).toEqual(Array.from(await outputs(quantized(symmetric, false))));
      const { dir, cleanup } = tempDir();
      try {
        const path = join(dir, 'optimized.onnx');
        await ort.InferenceSession.create(encodeInline(packed), { optimizedModelFilePath: path, graphOptimizationLevel: 'basic', logSeverityLevel: 4 });
        const g = decodeModelProto(readFileSync(path), path).graph!;
        expect((g.node ?? []).map((n) => n.op_type)).toEqual(['MatMulNBits']);
        const blob = g.initializer?.find((t) => t.name === g.node![0]!.input![1]);
        expect([blob?.data_type, blob?.dims?.map(Number)]).toEqual([DataType.UINT8, [N, 6, 16]]);
      } finally {
        cleanup();
      }
    });
  }

  it('the stored codes are 3 bits a weight: the packed initializer is what quantizedBytes counts for codes, size.ts counts K·N parameters', () => {
    const model = quantized(false, true);
    const init = (suffix: string) => (model.graph.initializer ?? []).find((t) => t.name?.endsWith(suffix))!;
    const p: WeightQuantParams = { bits: 3, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', accuracy_level: 0, scale_dtype: 'float16', packed_3bit: true };
    const stored = ['weight_q3', 'weight_scales_f16', 'weight_zero_points'].reduce((a, s) => a + init(s).raw_data!.byteLength, 0);
    expect(init('weight_q3').raw_data!.byteLength).toBe((N * 6 * 32 * 3) / 8);
    expect(stored).toBe(quantizedBytes(N, K, p));
    expect(modelSize(model, [], { readWeights: false }).params).toBe(K * N);
  });

  it('the tfjs executor (distill.kd) refuses packed codes with a user error naming the node and the fix, not the Mod op it lacks', async () => {
    const { OnnxExecutor } = await import('../../src/runtime/tfjs/executor.js');
    const { UserError } = await import('../../src/errors.js');
    const error = await OnnxExecutor.create(quantized(false, true)).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(UserError);
    expect((error as Error).message).toMatch(/MatMulNBits '[^']+' computes its codes or scales.*distill before quantizing/);
  });

  it('packed_3bit with 4 bits is a recipe error naming the field', () => {
    const r = gptq.params.safeParse({ bits: 4, granularity: 'group', group_size: 32, packed_3bit: true });
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => i.path.join('.'))).toContain('packed_3bit');
  });
});
