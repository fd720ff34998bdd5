import { describe, expect, it } from 'vitest';
import { linears } from '../../src/model/linears.js';
import { readWeight } from '../../src/model/linear-weights.js';
import { DataType } from '../../src/model/dtype.js';
import type { Model } from '../../src/model/model.js';
import { emitMatMulNBits } from '../../src/quantize/emit.js';
import type { InputStats } from '../../src/calibrate/stats.js';
import { prepareHessian } from '../../src/obs/hessian.js';
import { gptq, gptqRefit } from '../../src/quantize/gptq.js';
import { dequantizeMatrix, groupCount, quantizeMatrix, storedScale, type GridSpec, type QuantizedMatrix } from '../../src/quantize/grid.js';
import { quantizedBytes, WeightQuantParams } from '../../src/quantize/params.js';
import { refitScales } from '../../src/quantize/refit.js';
import { refitScalesOffsets } from '../../src/quantize/refit-offset.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { allClose } from '../helpers.js';
import { correlatedLayer, hWeightedError, refitOffsetRowRef } from '../reference/scale-refit.js';
import { singleMatMul } from './models.js';

/** Float MatMulNBits zero points: the joint scale/offset least squares, and what ONNX Runtime computes with them. */

const spec: GridSpec = { bits: 3, granularity: { kind: 'group', size: 8 }, symmetric: false };

describe('joint scale and zero-point refit', () => {
  it('equals the float64 normal-equations solution (BᵀHB)·θ = BᵀH·w: ŵ = (q − z)·s matches q·s + t, K = 20 in groups of 8 (short last group), correlated H', async () => {
    const [rows, cols, g] = [6, 20, 8];
    const { W, xtx } = correlatedLayer(rows, cols, 64, 5, 0.3);
    const m = quantizeMatrix(W, rows, cols, spec);
    const fit = await refitScalesOffsets(W, m, xtx);
    expect(fit.refitted).toBe(rows);
    const G = groupCount(cols, g);
    const Wq = dequantizeMatrix({ ...m, scales: fit.scales, floatZeros: fit.floatZeros });
    for (let r = 0; r < rows; r++) {
      const theta = refitOffsetRowRef(W.subarray(r * cols, (r + 1) * cols), m.q.subarray(r * cols, (r + 1) * cols), G, g, xtx);
      const ref = Float64Array.from({ length: cols }, (_, k) => m.q[r * cols + k]! * theta[Math.floor(k / g)]! + theta[G + Math.floor(k / g)]!);
      const c = allClose(Wq.subarray(r * cols, (r + 1) * cols), ref, 1e-5, 1e-6); // float32 storage of s and z: worst element 4.5e-8 off
      expect(c.ok, c.worst).toBe(true);
      expect(c.relFro).toBeLessThan(1e-6); // measured ≤ 8e-8
    }
  });

  it('never raises a row\'s H-weighted error, and ends no higher than the scale-only refit: 2–4 bits, 12 layers', async () => {
    for (let i = 0; i < 12; i++) {
      const [rows, cols] = [5, 40];
      const { W, xtx } = correlatedLayer(rows, cols, 30 + 10 * i, 200 + i, 0.3);
      const m = quantizeMatrix(W, rows, cols, { bits: [2, 3, 4][i % 3]!, granularity: { kind: 'group', size: 16 }, symmetric: false, mseClip: i % 2 === 0 });
      const joint = await refitScalesOffsets(W, m, xtx);
      const scaleOnly = await refitScales(W, m, xtx);
      expect(joint.after).toBeLessThanOrEqual(joint.before);
      expect(joint.after).toBeLessThanOrEqual(scaleOnly.after * (1 + 1e-6));
      const Wq = dequantizeMatrix({ ...m, scales: joint.scales, floatZeros: joint.floatZeros });
      let total = 0;
      for (let r = 0; r < rows; r++) total += hWeightedError(W.subarray(r * cols, (r + 1) * cols), Wq.subarray(r * cols, (r + 1) * cols), xtx);
      expect(Math.abs(total - joint.after)).toBeLessThanOrEqual(1e-9 * Math.max(total, 1));
    }
  });

  it('float16 storage: the stored scales and zero points are float16 values', async () => {
    const { W, xtx } = correlatedLayer(4, 32, 50, 3, 0.3);
    const m = quantizeMatrix(W, 4, 32, { ...spec, bits: 4, scaleDtype: 'float16' });
    const fit = await refitScalesOffsets(W, m, xtx, (s) => storedScale(s, 'float16'));
    for (const v of [...fit.scales, ...fit.floatZeros]) expect(storedScale(v, 'float16')).toBe(v);
  });
});

describe('GPTQ with float zero points', () => {
  it('gptqRefit: the joint refit ends at or below the scale-only refit on the same codes; 3 rounds (GPTQ on the float-zero grid) at or below one, with the error it reports', async () => {
    const [rows, cols] = [16, 64];
    const { W, xtx } = correlatedLayer(rows, cols, 200, 77, 0.3);
    const stats: InputStats = { tensor: 'x', dim: cols, rows: 200, xtx };
    const Wd = W.slice();
    const prepared = await prepareHessian(stats, Wd, rows, { dampening: 0.01, pass: 't', layer: 'l' });
    const opts = { bits: 3, granularity: { kind: 'group', size: 16 } as const, symmetric: false, blockSize: 32 };
    const total = (m: QuantizedMatrix) => {
      const Wq = dequantizeMatrix(m);
      let e = 0;
      for (let r = 0; r < rows; r++) e += hWeightedError(W.subarray(r * cols, (r + 1) * cols), Wq.subarray(r * cols, (r + 1) * cols), xtx);
      return e;
    };
    const scaleOnly = await gptqRefit(W, Wd, rows, cols, prepared, xtx, { ...opts, rounds: 1 });
    const one = await gptqRefit(W, Wd, rows, cols, prepared, xtx, { ...opts, rounds: 1, floatZeros: true });
    const three = await gptqRefit(W, Wd, rows, cols, prepared, xtx, { ...opts, rounds: 3, floatZeros: true });
    expect(one.m.q).toEqual(scaleOnly.m.q);
    expect(one.m.floatZeros).toBeDefined();
    expect(total(one.m)).toBeLessThan(total(scaleOnly.m));
    expect(total(three.m)).toBeLessThanOrEqual(total(one.m));
    expect(three.refit.after / total(three.m)).toBeCloseTo(1, 6);
  });

  it('float_zero_points on a symmetric grid or outside MatMulNBits is a recipe error naming the field', () => {
    for (const extra of [{ symmetric: true }, { format: 'qdq', opset: 21 }]) {
      const r = gptq.params.safeParse({ bits: 4, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', float_zero_points: true, ...extra });
      expect(r.success).toBe(false);
      expect(r.error!.issues.map((i) => i.path.join('.'))).toContain('float_zero_points');
    }
  });
});

describe('MatMulNBits with float zero points', () => {
  const [K, N] = [172, 24];

  async function outputs(model: Model): Promise<Float32Array> {
    const r = seededRandom(8);
    const x = new ort.Tensor('float32', Float32Array.from({ length: 7 * K }, () => r() * 2 - 1), [7, K]);
    return (await (await sessionFromModel(model, { threads: 1 })).run({ x })).y!.data as Float32Array;
  }

  for (const scaleDtype of ['float32', 'float16'] as const) {
    it(`ONNX Runtime's output equals the dequantized float model (zero points of the scales' type, ${scaleDtype} stored), K = 172 in a padded last block`, async () => {
      const model = singleMatMul(K, N);
      const [l] = linears(model);
      const W = readWeight(model, l!);
      const m = quantizeMatrix(W, N, K, { bits: 4, granularity: { kind: 'group', size: 32 }, symmetric: false, scaleDtype });
      const r = seededRandom(3);
      const round = (v: number) => storedScale(v, scaleDtype);
      // zero points off the integer grid, some outside [0, 15]
      const floatZeros = Float32Array.from(m.zeros, (z) => round(z + (r() - 0.5) * 3));
      const fm = { ...m, floatZeros };
      emitMatMulNBits(model, l!, fm, 0, { scaleDtype, floatZeros: true });
      const zp = model.graph.node!.at(-1)!.input![3]!;
      const stored = scaleDtype === 'float16' ? (model.graph.initializer ?? []).find((t) => t.name === `${zp}_f16`) : (model.graph.initializer ?? []).find((t) => t.name === zp);
      expect(stored?.data_type).toBe(scaleDtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT);
      expect((model.graph.node ?? []).map((n) => n.op_type)).toEqual(scaleDtype === 'float16' ? ['Cast', 'Cast', 'MatMulNBits'] : ['MatMulNBits']);
      const Wq = dequantizeMatrix(fm);
      // x·Wqᵀ in float64
      const rx = seededRandom(8);
      const x = Float64Array.from({ length: 7 * K }, () => rx() * 2 - 1);
      const want = Float64Array.from({ length: 7 * N }, (_, i) => {
        const [b, n] = [Math.floor(i / N), i % N];
        let v = 0;
        for (let k = 0; k < K; k++) v += x[b * K + k]! * Wq[n * K + k]!;
        return v;
      });
      const c = allClose(await outputs(model), want, 1e-4, 1e-5); // float32 accumulation: worst element 2.6e-7 off
      expect(c.ok, c.worst).toBe(true);
      expect(c.relFro).toBeLessThan(1e-5); // measured 2.6e-7
    });
  }

  it('bytes: a float zero point costs what a scale does', () => {
    const p = (extra: Record<string, unknown>) => WeightQuantParams.parse({ bits: 4, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', ...extra });
    expect(quantizedBytes(64, 172, p({ float_zero_points: true })) - quantizedBytes(64, 172, p({}))).toBe(64 * 6 * 4 - 64 * 3);
    expect(quantizedBytes(64, 172, p({ float_zero_points: true, scale_dtype: 'float16' })) - quantizedBytes(64, 172, p({ scale_dtype: 'float16' }))).toBe(64 * 6 * 2 - 64 * 3);
  });
});

describe('float zero points and the tfjs runtime', () => {
  function floatZeroModel(): Model {
    const [K, N] = [172, 24];
    const model = singleMatMul(K, N);
    const [l] = linears(model);
    const m = quantizeMatrix(readWeight(model, l!), N, K, { bits: 4, granularity: { kind: 'group', size: 32 }, symmetric: false });
    const r = seededRandom(4);
    emitMatMulNBits(model, l!, { ...m, floatZeros: Float32Array.from(m.zeros, (z) => Math.fround(z + r() - 0.5)) }, 0, { floatZeros: true });
    return model;
  }

  it('the executor reads float zero points: its output equals ONNX Runtime\'s', async () => {
    const { OnnxExecutor } = await import('../../src/runtime/tfjs/executor.js');
    const { bothOutputs, expectClose } = await import('../runtime/tfjs/helpers.js');
    const model = floatZeroModel();
    const r = seededRandom(9);
    const exec = await OnnxExecutor.create(model);
    const { got, ref } = await bothOutputs(exec, model, { name: 'x', data: Float32Array.from({ length: 5 * 172 }, () => r() * 2 - 1), dims: [5, 172] });
    const c = expectClose(got, ref, 1e-5); // measured 1.7e-7
    expect(c.ok, c.worst).toBe(true);
  });

  it('training codes with float zero points is a user error naming the fix', async () => {
    const { loadTf } = await import('../../src/runtime/tf.js');
    const { createTrainables } = await import('../../src/runtime/tfjs/trainables.js');
    const { UserError } = await import('../../src/errors.js');
    const { tf } = await loadTf();
    const model = floatZeroModel();
    const codes = model.graph.node![0]!.input![1]!;
    expect(() => createTrainables(tf, model, (name) => name === codes)).toThrow(UserError);
    expect(() => createTrainables(tf, model, (name) => name === codes)).toThrow(/float zero points.*without float_zero_points/);
  });
});
