import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { InputStats } from '../../src/calibrate/stats.js';
import { UserError } from '../../src/errors.js';
import { DataType } from '../../src/model/dtype.js';
import { readWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { decodeModelProto, encodeInline, readOnnx } from '../../src/model/onnx-io.js';
import { int64ToNumber, type GraphProto } from '../../src/model/onnx-schema.js';
import { relativeError } from '../../src/obs/output-error.js';
import { trellis } from '../../src/quantize/trellis.js';
import { streamBits, type TrellisShape } from '../../src/quantize/trellis-code.js';
import { trellisQuantizeLayer, trellisStoredBytes, type TrellisLayer } from '../../src/quantize/trellis-layer.js';
import { emitTrellisAtLoad } from '../../src/quantize/trellis-onnx.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { runCli } from '../cli/run-cli.js';
import { tempDir } from '../helpers.js';
import { singleGemm, singleMatMul } from './models.js';

/** quantize.trellis stores the stream and the scale; ONNX Runtime rebuilds the weight at load. */

const ROOT = resolve(__dirname, '../..');

/** A random Gram matrix XᵀX of `samples` rows of uniform inputs, float64. */
function randomGram(cols: number, samples: number, seed: number): InputStats {
  const r = seededRandom(seed);
  const X = Float64Array.from({ length: samples * cols }, () => r() * 2 - 1);
  const xtx = new Float64Array(cols * cols);
  for (let s = 0; s < samples; s++) for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) xtx[i * cols + j]! += X[s * cols + i]! * X[s * cols + j]!;
  return { tensor: 'x', dim: cols, rows: samples, xtx };
}

/** A one-layer model (MatMul, or Gemm when `gemm`) quantized by trellisQuantizeLayer and emitted. */
async function emitted(rows: number, cols: number, shape: TrellisShape, gemm?: Parameters<typeof singleGemm>[2], seeds = { out: 5, in: 6 }): Promise<{ model: Model; t: TrellisLayer; storedBytes: number }> {
  const model = gemm ? singleGemm(cols, rows, gemm) : singleMatMul(cols, rows);
  const layer = linears(model)[0]!;
  const W = readWeight(model, layer);
  const opts = { shape, seeds, dampening: 0.01, blockSize: 16, scaleFactor: 1, pass: 'quantize.trellis', layer: layer.name };
  const t = await trellisQuantizeLayer(W, rows, cols, randomGram(cols, 2 * cols + 16, rows + cols), opts);
  const { storedBytes } = emitTrellisAtLoad(model, layer, t);
  return { model, t, storedBytes };
}

/** y = α·x·Ŵᵀ + β·C in float64. */
function reference(x: Float32Array, batch: number, t: TrellisLayer, alpha = 1, bias?: Float32Array): Float64Array {
  const y = new Float64Array(batch * t.rows);
  for (let b = 0; b < batch; b++) {
    for (let r = 0; r < t.rows; r++) {
      let s = 0;
      for (let c = 0; c < t.cols; c++) s += x[b * t.cols + c]! * t.weight[r * t.cols + c]!;
      y[b * t.rows + r] = alpha * s + (bias?.[r] ?? 0);
    }
  }
  return y;
}

function randomInput(batch: number, cols: number, seed: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: batch * cols }, () => r() * 2 - 1);
}

async function run(model: Model, x: Float32Array, batch: number, cols: number): Promise<Float32Array> {
  const session = await sessionFromModel(model, { threads: 1 });
  try {
    return (await session.run({ x: new ort.Tensor('float32', x, [batch, cols]) })).y!.data as Float32Array;
  } finally {
    await session.release();
  }
}

/** The graph ONNX Runtime runs after its load-time optimizations (optimizedModelFilePath). */
async function optimizedGraph(model: Model, level: 'basic' | 'all'): Promise<GraphProto> {
  const { dir, cleanup } = tempDir();
  try {
    const path = join(dir, 'optimized.onnx');
    await (await ort.InferenceSession.create(encodeInline(model), { optimizedModelFilePath: path, graphOptimizationLevel: level, intraOpNumThreads: 1, logSeverityLevel: 4 })).release();
    return decodeModelProto(readFileSync(path), path).graph!;
  } finally {
    cleanup();
  }
}

const floatsOf = (t: { raw_data?: Uint8Array; float_data?: number[] }) => (t.raw_data?.byteLength ? new Float32Array(new Uint8Array(t.raw_data).slice().buffer) : Float32Array.from(t.float_data ?? []));

const SHAPES: [number, number][] = [
  [5, 7],
  [32, 64],
  [172, 64],
];
const CODES: TrellisShape[] = [2, 3, 4].flatMap((k) => [8, 12].map((L) => ({ L, k })));

describe('trellis weights rebuilt at load by ONNX Runtime', () => {
  for (const [rows, cols] of SHAPES) {
    for (const shape of CODES) {
      const name = `${rows}×${cols}, L = ${shape.L}, k = ${shape.k}`;
      it(`ORT output equals x·Ŵᵀ in float64 within 1e-5 relative, and the layer stores ⌈((L−k) + k·rows·cols)/8⌉ + 2 + 4 + ⌈cols/2⌉ bytes: ${name}`, async () => {
        const { model, t, storedBytes } = await emitted(rows, cols, shape);
        const x = randomInput(6, cols, 11);
        const y = await run(model, x, 6, cols);
        // float32 decode, Cos and two rotation GEMMs against float64 on pare's own float32 Ŵ: measured ≤ 4.2e-7
        expect(relativeError(reference(x, 6, t), y)).toBeLessThan(1e-5);

        const expected = Math.ceil(streamBits(rows * cols, shape) / 8) + 2 + 4 + Math.ceil(cols / 2);
        expect(expected).toBe(trellisStoredBytes(rows, cols, shape));
        const inits = model.graph.initializer ?? [];
        const own = inits.filter((i) => i.name?.startsWith('/proj/MatMul') || i.name?.startsWith('proj.'));
        expect(own.map((i) => [i.name, i.data_type]).sort()).toEqual([
          ['proj.trellis_exponents', DataType.UINT8],
          ['proj.trellis_scale', DataType.FLOAT],
          ['proj.trellis_stream', DataType.UINT8],
        ]);
        expect(own.reduce((a, i) => a + i.raw_data!.byteLength, 0)).toBe(expected);
        expect(storedBytes).toBe(expected);
        // everything else is a small shared constant: int64 scalars and shapes, the per-n float steps and α
        const rest = inits.filter((i) => !own.includes(i));
        expect(rest.every((i) => i.name!.startsWith('pare.trellis.'))).toBe(true);
        expect(rest.reduce((a, i) => a + i.raw_data!.byteLength, 0)).toBeLessThan(512); // measured 404 (L = 12, the 5×7 layer)
      });
    }
  }

  for (const [side, seeds] of [['neither side', { out: -1, in: -1 }], ['the inputs only', { out: -1, in: 6 }], ['the outputs only', { out: 5, in: -1 }]] as const) {
    it(`rotating ${side}: ORT output equals x·Ŵᵀ in float64 within 1e-5 relative`, async () => {
      const { model, t } = await emitted(32, 64, { L: 8, k: 3 }, undefined, seeds);
      const x = randomInput(6, 64, 12);
      expect(relativeError(reference(x, 6, t), await run(model, x, 6, 64))).toBeLessThan(1e-5);
      const cos = (model.graph.node ?? []).filter((n) => n.op_type === 'Cos').length;
      expect(cos).toBe((seeds.out >= 0 ? 1 : 0) + (seeds.in >= 0 ? 1 : 0));
    });
  }

  for (const level of ['basic', 'all'] as const) {
    for (const [rows, cols, shape] of [
      [5, 7, { L: 8, k: 2 }],
      [172, 64, { L: 12, k: 3 }],
    ] as const) {
      it(`ORT's optimized graph (level ${level}) is one MatMul whose float weight is Ŵᵀ: the decode was folded at load (${rows}×${cols}, L = ${shape.L}, k = ${shape.k})`, async () => {
        const { model, t } = await emitted(rows, cols, shape);
        const graph = await optimizedGraph(model, level);
        expect((graph.node ?? []).map((node) => node.op_type)).toEqual(['MatMul']);
        const weight = graph.initializer!.find((i) => i.name === graph.node![0]!.input![1]);
        expect(weight?.data_type).toBe(DataType.FLOAT);
        expect((weight?.dims ?? []).map(int64ToNumber)).toEqual([cols, rows]);
        const weightT = Float64Array.from({ length: rows * cols }, (_, i) => t.weight[(i % rows) * cols + Math.floor(i / rows)]!);
        expect(relativeError(weightT, floatsOf(weight!))).toBeLessThan(1e-5); // measured ≤ 3.7e-7
      });
    }
  }

  it('Gemm with transB, α and a bias: ORT output equals α·x·Ŵᵀ + C in float64 within 1e-5', async () => {
    const [rows, cols] = [24, 40];
    const { model, t } = await emitted(rows, cols, { L: 10, k: 3 }, { transB: true, alpha: 0.5, biasDims: [rows] });
    const bias = floatsOf(model.graph.initializer!.find((i) => i.name === 'C')!);
    const x = randomInput(5, cols, 12);
    expect(relativeError(reference(x, 5, t, 0.5, bias), await run(model, x, 5, cols))).toBeLessThan(1e-5); // measured 2.1e-7
    expect((model.graph.node ?? []).filter((n) => n.op_type === 'Gemm')).toEqual([]);
  });

  it('a model importing opset 10 is a user error naming the file, its opset and the fix', async () => {
    const model = singleMatMul(7, 5);
    model.proto.opset_import = [{ domain: '', version: 10 }];
    const layer = linears(model)[0]!;
    const t = await trellisQuantizeLayer(readWeight(model, layer), 5, 7, randomGram(7, 30, 1), { shape: { L: 8, k: 2 }, seeds: { out: 0, in: 1 }, dampening: 0.01, blockSize: 16, scaleFactor: 1, pass: 'quantize.trellis', layer: layer.name });
    expect(() => emitTrellisAtLoad(model, layer, t)).toThrow(UserError);
    expect(() => emitTrellisAtLoad(model, layer, t)).toThrow(/single-matmul\.onnx imports ONNX opset 10; .*Range \(opset 11\).*--opset 13/);
  });
});

describe('pare compress with quantize.trellis on stories260K', () => {
  const tmp = tempDir('pare-trellis-');
  afterAll(() => tmp.cleanup());
  const fixtures = join(ROOT, 'fixtures');
  const MODEL = join(fixtures, 'stories260K/model.onnx');

  it('bits 3 on layers.*.mlp.*: the file shrinks by the dense weights less the streams, one codebook and one DCT per shape serve all 15 layers, perplexity within 2× of dense', async () => {
    const recipe = join(tmp.dir, 'trellis.yaml');
    writeFileSync(
      recipe,
      `version: 1
calibration:
  data: { kind: text, path: ${fixtures}/tinystories/valid-head.txt, tokenizer: ${fixtures}/stories260K/tok512.bin, select: "1-10", segment: 128 }
  samples: 4
passes:
  - pass: quantize.trellis
    targets: ["layers.*.mlp.*"]
    params: { bits: 3 }
eval:
  data: { kind: text, path: ${fixtures}/tinystories/valid-head.txt, tokenizer: ${fixtures}/stories260K/tok512.bin, select: "11-16" }
`,
    );
    const out = join(tmp.dir, 'trellis.onnx');
    const report = join(tmp.dir, 'trellis.json');
    const r = await runCli(['compress', MODEL, '-r', recipe, '-o', out, '--report', report, '--threads', '1']);
    expect(r.err + r.out).not.toContain('internal error');
    expect(r.code).toBe(0);

    const json = JSON.parse(readFileSync(report, 'utf8'));
    const layers: { name: string; shape: [number, number]; bytes_before: number; bytes_after: number }[] = json.passes[0].layers;
    expect(layers).toHaveLength(15); // 5 blocks × gate, up, down (172×64 and 64×172)
    const stream = (rows: number, cols: number) => Math.ceil(streamBits(rows * cols, { L: 12, k: 3 }) / 8) + 2 + 4 + Math.ceil(cols / 2);
    for (const l of layers) expect(l.bytes_after).toBe(stream(...l.shape));
    const planned = trellis.params.parse({ bits: 3 });
    for (const l of linears(readOnnx(MODEL)).filter((l) => l.name.includes('.mlp.'))) expect(trellis.estimateBytes!(l, planned, 0)).toBe(stream(l.outFeatures, l.inFeatures));
    const saved = layers.reduce((a, l) => a + l.bytes_before - l.bytes_after, 0);

    const model = readOnnx(out);
    const stored = (model.graph.initializer ?? []).filter((i) => /\.trellis_(stream|scale|exponents)$/.test(i.name ?? ''));
    expect(stored.reduce((a, i) => a + i.raw_data!.byteLength, 0)).toBe(layers.reduce((a, l) => a + l.bytes_after, 0));
    const producers = (name: string) => (model.graph.node ?? []).filter((n) => n.output?.includes(name)).length;
    expect([producers('pare.trellis.code_L12'), producers('pare.trellis.dct_n64'), producers('pare.trellis.dct_t_n64'), producers('pare.trellis.dct_n172'), producers('pare.trellis.dct_t_n172')]).toEqual([1, 1, 1, 1, 1]);
    expect(linears(model).filter((l) => l.name.includes('.mlp.'))).toEqual([]);

    // the decoder's nodes cost bytes too (21 a layer, about 3.5 KB with their names): measured 534,158 of 598,440 saved (89 %)
    const shrink = statSync(MODEL).size - statSync(out).size;
    expect(shrink).toBeGreaterThan(0.85 * saved);
    expect(shrink).toBeLessThanOrEqual(saved);

    // the size report counts a stream as the weights it holds (model/size.ts), the exponents and decoder constants as none
    expect(json.measurements.model.size.params).toBe(json.measurements.reference.size.params);

    const dense = json.measurements.reference.quality.perplexity;
    const ppl = json.measurements.model.quality.perplexity;
    expect(Number.isFinite(ppl)).toBe(true);
    expect(ppl).toBeLessThan(2 * dense); // measured 4.13 against dense 3.32
  }, 60_000);
});
