import type { Measure } from '../../src/eval/evaluate.js';
import type { Io } from '../../src/cli/main.js';
import { newReport, type PassReport, type Report } from '../../src/report/schema.js';

/** Hand-written measurements shaped like stories260K's (NLL 1.2229, ppl 3.397 on 14,721 tokens of valid-head.txt). */
export function lmMeasure(path: string, nll: number, o: { fileBytes?: number; nonzeros?: number } = {}): Measure {
  const params = 262_656;
  return {
    path,
    sha256: `${path.length.toString(16).padStart(2, '0')}${'ab'.repeat(31)}`,
    size: {
      file_bytes: o.fileBytes ?? 1_063_000,
      params,
      bytes_by_dtype: { float32: params * 4, int64: 256 },
      params_by_dtype: { float32: params },
      nonzeros: o.nonzeros ?? params,
      sparse_bytes: Math.ceil(params / 8) + (o.nonzeros ?? params) * 4,
      bits_per_weight: 32.0078,
    },
    quality: { task: 'causal-lm', nll, perplexity: Math.exp(nll), ppl_ci95: [Math.exp(nll - 0.0174), Math.exp(nll + 0.0174)], tokens: 14_721, sequences: 46 },
    latency: { median_ms: 3.42, p90_ms: 3.9, runs: 20, warmup: 3, threads: 4, batch: 1, seq_len: 128 },
  };
}

/** mnist-8 shaped: 98.91% top-1 on 10,000 digits. */
export function classifierMeasure(path: string, top1: number, top5 = 0.9999): Measure {
  return {
    path,
    sha256: 'cd'.repeat(32),
    size: { file_bytes: 26_454, params: 5_998, bytes_by_dtype: { float32: 23_992, int64: 16 }, params_by_dtype: { float32: 5_998 }, nonzeros: 5_998, sparse_bytes: 24_742, bits_per_weight: 32.02 },
    quality: { task: 'classification', top1, top5, samples: 10_000 },
  };
}

export const STORIES_DATA = {
  description: 'text valid-head.txt, tok512.bin, bos, max_length 512',
  files: [
    { path: 'fixtures/tinystories/valid-head.txt', sha256: '1f'.repeat(32) },
    { path: 'fixtures/stories260K/tok512.bin', sha256: '2e'.repeat(32) },
  ],
};

export function magnitudePass(layerCount: number): PassReport {
  return {
    id: 'prune.magnitude',
    targets: ['layers.*'],
    params: { sparsity: 0.5, scope: 'layer' },
    ms: 41.5,
    layers: Array.from({ length: layerCount }, (_, i) => ({
      name: `model.layers.${i >> 3}.mlp.proj_${i % 8}`,
      kind: 'MatMul',
      shape: [172, 64],
      ms: 0.8,
      bytes_before: 44_032,
      bytes_after: 44_032,
      sparsity: 0.5,
      objective: 12.5 + i,
      extra: { threshold: 0.0123 },
    })),
  };
}

/** A `pare compress` report of stories260K at the given NLL of the compressed model. */
export function compressReport(nll: number, o: { layers?: number; data?: Report['data']; warnings?: string[] } = {}): Report {
  return newReport({
    kind: 'compress',
    input: { path: 'fixtures/stories260K/model.onnx', sha256: '01'.repeat(32), format: 'onnx' },
    output: { path: 'out/stories-50.onnx', sha256: '02'.repeat(32), format: 'onnx', files: ['out/stories-50.onnx'] },
    recipe: { path: 'recipes/magnitude-50.yaml', sha256: '03'.repeat(32) },
    seed: 0,
    data: o.data ?? STORIES_DATA,
    passes: [magnitudePass(o.layers ?? 4)],
    measurements: {
      reference: lmMeasure('fixtures/stories260K/model.onnx', 1.2229),
      model: lmMeasure('out/stories-50.onnx', nll, { nonzeros: 150_000 }),
    },
    fidelity: { kl_mean: 0.0412, kl_p50: 0.021, kl_p90: 0.097, kl_p99: 0.31, top1_agreement: 0.912, cosine: 0.987, positions: 14_721 },
    warnings: o.warnings ?? [],
    timings: { total_ms: 5230, passes_ms: 41.5, eval_ms: 5100 },
  });
}

export function captureIo(): { io: Io; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const io: Io = { out: (t) => (out += t.endsWith('\n') ? t : `${t}\n`), err: (t) => (err += t.endsWith('\n') ? t : `${t}\n`), fancy: false };
  return { io, out: () => out, err: () => err };
}
