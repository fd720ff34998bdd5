import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Calibrator } from '../../src/calibrate/calibrator.js';
import { calibrationFeeds, type Feeds } from '../../src/calibrate/feeds.js';
import { readWeight } from '../../src/model/linear-weights.js';
import { linears, type LinearLayer } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { float16ToFloat32, float32ToFloat16 } from '../../src/model/pack.js';
import { biasCorrectionProblems, centeredStats } from '../../src/quantize/bias-correction.js';
import { InputStatsAccumulator } from '../../src/calibrate/stats.js';
import { gramRef } from '../reference/matmul.js';
import { gptq } from '../../src/quantize/gptq.js';
import { mixed } from '../../src/quantize/mixed.js';
import { rtn } from '../../src/quantize/rtn.js';
import { captureSession, ort, sessionFromModel } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { singleGemm, singleMatMul, storiesCalibration } from './models.js';

const ROOT = resolve(__dirname, '../..');
const K = 72;
const N = 24;
const noProgress = { layer: () => {} };

/** `count` calibration batches of 16 rows x [16, K], each channel with its own non-zero mean (so the mean error is not small by symmetry). */
function shiftedInputs(count: number, seed: number): Feeds[] {
  const r = seededRandom(seed);
  const shift = Float32Array.from({ length: K }, () => r() * 2 - 0.5);
  return Array.from({ length: count }, () => ({ x: new ort.Tensor('float32', Float32Array.from({ length: 16 * K }, (_, i) => shift[i % K]! + r() - 0.5), [16, K]) }));
}

async function outputs(model: Model, xs: Float32Array[]): Promise<Float32Array[]> {
  // accuracy level 0: ORT would otherwise fuse DequantizeLinear → MatMul into int8-activation MatMulNBits
  const session = await sessionFromModel(model, { threads: 1, qdqMatMulNBitsAccuracyLevel: 0 });
  const out: Float32Array[] = [];
  for (const x of xs) out.push((await session.run({ x: new ort.Tensor('float32', x, [x.length / K, K]) })).y!.data as Float32Array);
  return out;
}

/**
 * What the stored layer computes, read back from ORT alone: y(0) = the bias it adds, and
 * y(e_j) − y(0) = column j of the weight it multiplies by (times α for a Gemm).
 */
async function probe(model: Model): Promise<{ bias: Float64Array; Wq: Float64Array }> {
  const rows = [new Float32Array(K), ...Array.from({ length: K }, (_, j) => Float32Array.from({ length: K }, (_, i) => (i === j ? 1 : 0)))];
  const [y0, ...ys] = await outputs(model, rows);
  const Wq = new Float64Array(N * K);
  ys.forEach((y, j) => y.forEach((v, n) => (Wq[n * K + j] = v - y0![n]!)));
  return { bias: Float64Array.from(y0!), Wq };
}

/** Mean over the feeds' rows of x, in float64. */
function meanOf(feeds: Feeds[]): Float64Array {
  const mu = new Float64Array(K);
  let rows = 0;
  for (const f of feeds) {
    const x = f.x!.data as Float32Array;
    for (let i = 0; i < x.length; i++) mu[i % K] += x[i]!;
    rows += x.length / K;
  }
  return mu.map((s) => s / rows);
}

/**
 * mean over rows of (quantized − float) outputs, and the bound float32 arithmetic allows it: 1e-5 of
 * the error's rms plus 1e-6 of the outputs' rms (ORT's sums round at float32 ε ≈ 6e-8 of |y|).
 */
async function meanError(quantized: Model, float: Model, feeds: Feeds[]): Promise<{ mean: Float64Array; rms: number; tolerance: number }> {
  const xs = feeds.map((f) => f.x!.data as Float32Array);
  const [q, f] = [await outputs(quantized, xs), await outputs(float, xs)];
  const mean = new Float64Array(N);
  let sq = 0;
  let ySq = 0;
  let rows = 0;
  q.forEach((y, b) => {
    y.forEach((v, i) => {
      const d = v - f[b]![i]!;
      mean[i % N] += d;
      sq += d * d;
      ySq += v * v;
    });
    rows += y.length / N;
  });
  const rms = Math.sqrt(sq / (rows * N));
  return { mean: mean.map((s) => s / rows), rms, tolerance: 1e-5 * rms + 1e-6 * Math.sqrt(ySq / (rows * N)) };
}

const ctxFor = (model: Model, feeds: Feeds[], mode: 'oneshot' | 'sequential' = 'oneshot') => ({ layers: linears(model), seed: 0, random: Math.random, progress: noProgress, where: 'passes[0]', calibration: new Calibrator(feeds, mode, 1) });

/** b = (W_float − Ŵ)·μ in float64 with Ŵ read back from ORT; `alpha` the Gemm's output scale Ŵ carries. */
function expectedBias(W: Float32Array, Wq: Float64Array, mu: Float64Array, alpha = 1): Float64Array {
  return Float64Array.from({ length: N }, (_, n) => {
    let s = 0;
    for (let j = 0; j < K; j++) s += (alpha * W[n * K + j]! - Wq[n * K + j]!) * mu[j]!;
    return s;
  });
}

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

describe('bias correction', () => {
  const G32 = { bits: 4, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', accuracy_level: 0 } as const;

  it('GPTQ 4-bit g32 MatMulNBits (K = 72, padded last block): ORT adds b = (W − Ŵ)·μ through MatMulNBits\' bias, and the mean output error on the calibration inputs is 0', async () => {
    const feeds = shiftedInputs(8, 1);
    const float = singleMatMul(K, N);
    const model = singleMatMul(K, N);
    const W = readWeight(float, linears(float)[0]!);
    const before = singleMatMul(K, N);
    const beforeBytes = (await gptq.apply(before, gptq.params.parse({ ...G32, mse_clip: true }), ctxFor(before, feeds))).layers[0]!.bytes_after!;
    const result = await gptq.apply(model, gptq.params.parse({ ...G32, mse_clip: true, bias_correction: true }), ctxFor(model, feeds));
    const node = model.graph.node!.find((n) => n.op_type === 'MatMulNBits')!;
    expect(node.input).toHaveLength(6);
    // the uncorrected model's mean error is far from 0; the corrected one's is float32 noise
    const off = await meanError(before, float, feeds);
    const on = await meanError(model, float, feeds);
    expect(maxAbs(off.mean)).toBeGreaterThan(0.1 * off.rms); // measured ≈ 0.4
    expect(maxAbs(on.mean)).toBeLessThanOrEqual(on.tolerance);
    // what ORT runs: the dequantized weight plus exactly (W − Ŵ)·μ
    const { bias, Wq } = await probe(model);
    const want = expectedBias(W, Wq, meanOf(feeds));
    for (let n = 0; n < N; n++) expect(Math.abs(bias[n]! - want[n]!)).toBeLessThanOrEqual(1e-5 * maxAbs(want));
    // same weights as without correction: it only adds the bias
    const { Wq: WqBefore } = await probe(before);
    expect(maxAbs(Wq.map((v, i) => v - WqBefore[i]!))).toBeLessThanOrEqual(1e-6);
    // reported: the error after correction below the one before, and 4 bytes an output
    const layer = result.layers[0]!;
    expect(layer.objective!).toBeLessThan(Number(layer.extra!.error_before_bias_correction));
    expect(layer.bytes_after! - beforeBytes).toBe(4 * N);
  });

  it('the reported corrected error equals the mean ‖Δx − b‖² measured on the calibration rows', async () => {
    const feeds = shiftedInputs(4, 2);
    const float = singleMatMul(K, N);
    const model = singleMatMul(K, N);
    const result = await gptq.apply(model, gptq.params.parse({ ...G32, bias_correction: true }), ctxFor(model, feeds));
    const xs = feeds.map((f) => f.x!.data as Float32Array);
    const [q, f] = [await outputs(model, xs), await outputs(float, xs)];
    let sq = 0;
    let rows = 0;
    q.forEach((y, b) => {
      y.forEach((v, i) => (sq += (v - f[b]![i]!) ** 2));
      rows += y.length / N;
    });
    expect(Math.abs(result.layers[0]!.objective! - sq / rows) / (sq / rows)).toBeLessThanOrEqual(1e-4);
  });

  it('float16 scales: the bias is stored float16 behind a Cast (2 bytes an output) and ORT adds its float16 value', async () => {
    const feeds = shiftedInputs(4, 3);
    const model = singleMatMul(K, N);
    const W = readWeight(model, linears(model)[0]!);
    const other = singleMatMul(K, N);
    const plain = await gptq.apply(other, gptq.params.parse({ ...G32, scale_dtype: 'float16' }), ctxFor(other, feeds));
    const result = await gptq.apply(model, gptq.params.parse({ ...G32, scale_dtype: 'float16', bias_correction: true }), ctxFor(model, feeds));
    expect(result.layers[0]!.bytes_after! - plain.layers[0]!.bytes_after!).toBe(2 * N);
    const biasInput = model.graph.node!.find((n) => n.op_type === 'MatMulNBits')!.input![5]!;
    const cast = model.graph.node!.find((n) => n.op_type === 'Cast' && n.output![0] === biasInput)!;
    expect(model.tensor(cast.input![0]!).dataType).toBe(10);
    const { bias, Wq } = await probe(model);
    const want = expectedBias(W, Wq, meanOf(feeds));
    // the stored value is the float16 rounding of b (within a float16 step, as Ŵ read back carries float32 noise)
    const stored = float16ToFloat32(float32ToFloat16(Float32Array.from(want)));
    for (let n = 0; n < N; n++) expect(Math.abs(bias[n]! - stored[n]!)).toBeLessThanOrEqual(2 ** -11 * Math.abs(want[n]!) + 1e-6 * maxAbs(want));
    expect(Array.from(bias).filter((v, n) => v === stored[n]).length).toBeGreaterThan(N / 2);
  });

  const gemms: [string, Parameters<typeof singleGemm>[2], 'matmulnbits' | 'qdq'][] = [
    ['Gemm transB with bias [N] as MatMulNBits', { transB: true, biasDims: [N] }, 'matmulnbits'],
    ['Gemm with bias [1, N], β 0.5 as MatMulNBits', { transB: false, beta: 0.5, biasDims: [1, N] }, 'matmulnbits'],
    ['Gemm α 2, β 0.5 with bias, blocked DequantizeLinear', { transB: true, alpha: 2, beta: 0.5, biasDims: [N] }, 'qdq'],
    ['Gemm without bias, blocked DequantizeLinear', { transB: false }, 'qdq'],
  ];
  for (const [label, shape, format] of gemms) {
    it(`${label}: the correction is merged into the layer's own bias: y(0) = β·C + α·(W − Ŵ)·μ`, async () => {
      const feeds = shiftedInputs(4, 4);
      const model = singleGemm(K, N, shape);
      const float = singleGemm(K, N, shape);
      const yFloat0 = (await outputs(float, [new Float32Array(K)]))[0]!; // β·C
      const W = readWeight(model, linears(model)[0]!);
      await rtn.apply(model, rtn.params.parse({ ...G32, format, ...(format === 'qdq' ? { opset: 21 } : {}), bias_correction: true }), ctxFor(model, feeds));
      const ops = model.graph.node!.map((n) => n.op_type);
      expect(ops.filter((o) => o === 'Add')).toHaveLength(0); // merged, no extra node
      const { bias, Wq } = await probe(model);
      const alpha = shape.alpha ?? 1;
      const want = expectedBias(W, Wq, meanOf(feeds), alpha);
      for (let n = 0; n < N; n++) expect(Math.abs(bias[n]! - (yFloat0[n]! + want[n]!))).toBeLessThanOrEqual(1e-5 * (maxAbs(want) + maxAbs(yFloat0)));
      const on = await meanError(model, float, feeds);
      expect(maxAbs(on.mean)).toBeLessThanOrEqual(on.tolerance);
    });
  }

  it('MatMul as per-channel DequantizeLinear: the correction is an Add after the MatMul', async () => {
    const feeds = shiftedInputs(4, 5);
    const model = singleMatMul(K, N);
    const float = singleMatMul(K, N);
    await rtn.apply(model, rtn.params.parse({ bits: 8, granularity: 'channel', symmetric: true, format: 'qdq', bias_correction: true }), ctxFor(model, feeds));
    expect(model.graph.node!.map((n) => n.op_type)).toEqual(['DequantizeLinear', 'MatMul', 'Add']);
    const on = await meanError(model, float, feeds);
    expect(maxAbs(on.mean)).toBeLessThanOrEqual(on.tolerance);
  });

  it('RTN needs calibration only with bias_correction; conv layers are refused', () => {
    expect(rtn.needsCalibration(rtn.params.parse({ bits: 4 })).need).toBe('none');
    expect(rtn.needsCalibration(rtn.params.parse({ bits: 4, bias_correction: true })).need).toBe('required');
    const conv = { name: 'conv1', kind: 'conv' } as LinearLayer;
    expect(biasCorrectionProblems('quantize.gptq', [conv])[0]!.message).toMatch(/'conv1' is a conv; bias_correction adds an output bias to MatMul and Gemm layers only/);
  });

  it('stories260K, sequential GPTQ: each q_proj\'s mean output error is 0 on the inputs the quantized model feeds it', async () => {
    const model = readOnnx(join(ROOT, 'fixtures/stories260K/model.onnx'));
    const original = readOnnx(join(ROOT, 'fixtures/stories260K/model.onnx'));
    const data = await storiesCalibration(join(ROOT, 'fixtures'));
    const feeds = calibrationFeeds(model, data, 8);
    const layers = linears(model).filter((l) => l.name.startsWith('layers.'));
    const q = linears(original).filter((l) => l.name.endsWith('q_proj'));
    await gptq.apply(model, gptq.params.parse({ ...G32, mse_clip: true, bias_correction: true }), { layers, seed: 0, random: Math.random, progress: noProgress, where: 'passes[0]', calibration: new Calibrator(feeds, 'sequential', 1) });
    // q_proj reads block i's input, which only blocks before i change: the sequential statistics are exactly the final model's inputs
    const names = q.flatMap((l) => [l.input, l.output]);
    const session = await captureSession(model, names, { threads: 1 });
    for (const l of q) {
      const W = readWeight(original, l);
      const [rows, cols] = [l.outFeatures, l.inFeatures];
      const mean = new Float64Array(rows);
      let sq = 0;
      let count = 0;
      for (const f of feeds) {
        const out = await session.run(f, names);
        const x = out[l.input]!.data as Float32Array;
        const y = out[l.output]!.data as Float32Array;
        for (let t = 0; t < x.length / cols; t++) {
          for (let r = 0; r < rows; r++) {
            let yf = 0;
            for (let j = 0; j < cols; j++) yf += x[t * cols + j]! * W[r * cols + j]!;
            const d = y[t * rows + r]! - yf;
            mean[r] += d;
            sq += d * d;
          }
          count++;
        }
      }
      const rms = Math.sqrt(sq / (count * rows));
      expect(maxAbs(mean.map((s) => s / count)), l.name).toBeLessThanOrEqual(1e-4 * rms); // measured ≤ 1e-6 relative
    }
    await session.release();
  });

  it('quantize.mixed counts the bias inside its budget', async () => {
    const feeds = shiftedInputs(4, 6);
    // 4-bit g32 of 24 × 72 stores 1488 bytes (codes in 3 padded blocks, scales, zero points); the bias adds 96
    const params = { bits: [4], group_sizes: [32], sensitivity: 'output', bias_correction: true };
    const tight = singleMatMul(K, N);
    await expect(mixed.apply(tight, mixed.params.parse({ ...params, budget_bytes: 1500 }), ctxFor(tight, feeds))).rejects.toThrow(/below the smallest choices' 1584 bytes/);
    const model = singleMatMul(K, N);
    const result = await mixed.apply(model, mixed.params.parse({ ...params, budget_bytes: 1584 }), ctxFor(model, feeds));
    const layer = result.layers[0]!;
    expect(layer.bytes_after).toBe(1584);
    expect(result.summary!.bytes).toBe(1584);
    const on = await meanError(model, singleMatMul(K, N), feeds);
    expect(maxAbs(on.mean)).toBeLessThanOrEqual(on.tolerance);
  });

  it('centred statistics: XᵀX − n·μμᵀ equals the Gram matrix of X − μ computed directly (float64)', async () => {
    const feeds = shiftedInputs(6, 7);
    const model = singleMatMul(K, N);
    const acc = new InputStatsAccumulator(linears(model)[0]!, { hessian: true, sum: true }, 'float64');
    for (const f of feeds) await acc.add(f.x!.data as Float32Array, f.x!.dims as number[]);
    const stats = await acc.result();
    const mu = meanOf(feeds);
    const X = new Float64Array(feeds.length * 16 * K);
    feeds.forEach((f, b) => (f.x!.data as Float32Array).forEach((v, i) => (X[b * 16 * K + i] = v - mu[i % K]!)));
    const want = gramRef(X, feeds.length * 16, K);
    const got = centeredStats(stats, 't', 'proj').xtx!;
    const scale = maxAbs(want);
    for (let i = 0; i < K * K; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(1e-9 * scale * feeds.length * 16);
    expect(centeredStats(stats, 't', 'proj')).toBe(centeredStats(stats, 't', 'proj')); // one copy for layers sharing an input
  });

  it('center_hessian: GPTQ on the centred XᵀX leaves a lower corrected error than on XᵀX (same codes budget); refused without bias_correction', async () => {
    const feeds = shiftedInputs(8, 8);
    const plainModel = singleMatMul(K, N);
    const centredModel = singleMatMul(K, N);
    const plain = (await gptq.apply(plainModel, gptq.params.parse({ ...G32, bits: 3, bias_correction: true }), ctxFor(plainModel, feeds))).layers[0]!;
    const centred = (await gptq.apply(centredModel, gptq.params.parse({ ...G32, bits: 3, bias_correction: true, center_hessian: true }), ctxFor(centredModel, feeds))).layers[0]!;
    expect(centred.objective!).toBeLessThan(plain.objective!); // measured on this seed: see the bench for what it does to perplexity
    const on = await meanError(centredModel, singleMatMul(K, N), feeds);
    expect(maxAbs(on.mean)).toBeLessThanOrEqual(on.tolerance);
    expect(() => gptq.params.parse({ ...G32, center_hessian: true })).toThrow(/center_hessian minimises the error left after the bias correction; set bias_correction: true/);
  });
});
