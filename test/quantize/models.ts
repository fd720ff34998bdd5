import { Calibrator } from '../../src/calibrate/calibrator.js';
import { calibrationFeeds } from '../../src/calibrate/feeds.js';
import type { Dataset } from '../../src/data/types.js';
import { attr, makeNode } from '../../src/model/graph.js';
import type { LinearLayer } from '../../src/model/linears.js';
import type { PassContext } from '../../src/pass/pass.js';
import { loadDataset } from '../../src/data/load.js';
import { Model } from '../../src/model/model.js';
import { sessionFromModel, type SessionOptions } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { decoderFeeds } from '../decoder-feeds.js';

/** x [batch, k] · W [k, n] with seeded weights. */
export function singleMatMul(k: number, n: number): Model {
  const r = seededRandom(k * n);
  const W = Float32Array.from({ length: k * n }, () => r() - 0.5);
  const tensorType = (dims: (number | string)[]) => ({ tensor_type: { elem_type: 1, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } });
  return new Model(
    {
      ir_version: 8,
      opset_import: [{ domain: '', version: 17 }],
      graph: {
        name: 'single-matmul',
        node: [makeNode('MatMul', ['x', 'W'], ['y'], '/proj/MatMul')],
        initializer: [{ name: 'W', data_type: 1, dims: [k, n], raw_data: new Uint8Array(W.buffer) }],
        input: [{ name: 'x', type: tensorType(['batch', k]) }],
        output: [{ name: 'y', type: tensorType(['batch', n]) }],
      },
    },
    'single-matmul.onnx',
  );
}


/**
 * Gemm(x [batch, k], W, C): W is `weight` ([n, k], out × in) or seeded, stored [n, k] when transB,
 * else [k, n]; C optional.
 */
export function singleGemm(k: number, n: number, opts: { transB: boolean; alpha?: number; beta?: number; biasDims?: number[]; weight?: ArrayLike<number> }): Model {
  const r = seededRandom(k * n + 1);
  const outIn = Float32Array.from(opts.weight ?? Array.from({ length: k * n }, () => r() - 0.5));
  const W = opts.transB ? outIn : Float32Array.from({ length: k * n }, (_, i) => outIn[(i % n) * k + Math.floor(i / n)]!);
  const tensorType = (dims: (number | string)[]) => ({ tensor_type: { elem_type: 1, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } });
  const initializer = [{ name: 'W', data_type: 1, dims: opts.transB ? [n, k] : [k, n], raw_data: new Uint8Array(W.buffer) }];
  const inputs = ['x', 'W'];
  if (opts.biasDims) {
    const C = Float32Array.from({ length: n }, () => r() - 0.5);
    initializer.push({ name: 'C', data_type: 1, dims: opts.biasDims, raw_data: new Uint8Array(C.buffer) });
    inputs.push('C');
  }
  const attributes = [attr.int('transB', opts.transB ? 1 : 0), attr.float('alpha', opts.alpha ?? 1), attr.float('beta', opts.beta ?? 1)];
  return new Model(
    {
      ir_version: 8,
      opset_import: [{ domain: '', version: 17 }],
      graph: {
        name: 'single-gemm',
        node: [makeNode('Gemm', inputs, ['y'], '/proj/Gemm', attributes)],
        initializer,
        input: [{ name: 'x', type: tensorType(['batch', k]) }],
        output: [{ name: 'y', type: tensorType(['batch', n]) }],
      },
    },
    'single-gemm.onnx',
  );
}

/** Seeded random token windows for stories260K (vocabulary 512): `batch` × `seq` ids from `seed`; defaults 2 × 48, seed 8. */
export interface StoriesTokens {
  batch?: number;
  seq?: number;
  seed?: number;
  /** ONNX Runtime session options beyond threads: 1 */
  session?: SessionOptions;
}

/** The ids of `storiesOutputs`, row-major [batch, seq]. */
export function storiesTokens(opts: StoriesTokens = {}): BigInt64Array {
  const { batch = 2, seq = 48, seed = 8 } = opts;
  const r = seededRandom(seed);
  return BigInt64Array.from({ length: batch * seq }, () => BigInt(Math.floor(r() * 512)));
}

/**
 * stories260K's `outputs` on seeded random windows (storiesTokens), fed as ONNX Runtime's own input
 * metadata asks (decoderFeeds): the plain export, its KV-cache form and the safetensors build alike.
 */
export async function storiesOutputs(model: Model, outputs: string[], opts: StoriesTokens = {}): Promise<Record<string, Float32Array>> {
  const { batch = 2, seq = 48 } = opts;
  const s = await sessionFromModel(model, { threads: 1, ...opts.session, ...(outputs.some((o) => o !== 'logits') ? { extraOutputs: outputs.filter((o) => o !== 'logits') } : {}) });
  try {
    const out = await s.run(decoderFeeds(s, storiesTokens(opts), batch, seq), outputs);
    return Object.fromEntries(outputs.map((o) => [o, out[o]!.data as Float32Array]));
  } finally {
    await s.release();
  }
}

/** stories260K's logits on seeded random windows (by default two of 48 tokens): what an exact rewrite must leave unchanged. */
export async function storiesLogits(model: Model, opts: StoriesTokens = {}): Promise<Float32Array> {
  return (await storiesOutputs(model, ['logits'], opts)).logits!;
}

/** The issues' calibration text for stories260K: stories 1–10 in 128-token segments. */
export function storiesCalibration(fixtures: string): ReturnType<typeof loadDataset> {
  return loadDataset({ kind: 'text', path: 'tinystories/valid-head.txt', tokenizer: 'stories260K/tok512.bin', separator: '<|endoftext|>', bos: true, max_length: 512, select: '1-10', segment: 128 }, fixtures);
}

/** What a calibrated pass's apply gets: `layers`, and a one-shot calibration of `samples` samples of `data`. */
export function calibratedContext(model: Model, data: Dataset, samples: number, layers: LinearLayer[]): PassContext {
  return { layers, seed: 0, random: Math.random, calibration: new Calibrator(calibrationFeeds(model, data, samples), 'oneshot', 1), progress: { layer() {} }, where: 'passes[0]' };
}
