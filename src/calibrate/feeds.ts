import type { Dataset } from '../data/types.js';
import { layoutAdapter } from '../data/layout.js';
import { isKvCacheName, lmFeeds, modelIo, type ModelIo } from '../model/io.js';
import { Model } from '../model/model.js';
import { ortFeeds } from '../runtime/feeds.js';
import { ort } from '../runtime/ort.js';

export type Feeds = Record<string, ort.Tensor>;

/**
 * The calibration inputs as ONNX Runtime feeds, one sample per run: token sequences (cut to
 * `seqLen` when given) as [1, L] with the decoder inputs `io` describes (mask, positions, an empty
 * KV cache), tensor samples in the model's input layout.
 */
export function calibrationFeeds(model: Model | ModelIo, data: Dataset, samples: number, seqLen?: number, dataPath?: string): Feeds[] {
  // a Model is described from its declared inputs; callers that resolved symbolic KV shapes pass the description
  const io = model instanceof Model ? modelIo(model) : model;
  const feeds: Feeds[] = [];
  if (data.kind === 'tokens') {
    for (const seq of data.sequences.slice(0, samples)) {
      const ids = seq.subarray(0, seqLen ?? seq.length);
      feeds.push(ortFeeds(lmFeeds(io, ids, 1, ids.length)));
    }
    return feeds;
  }
  const adapt = layoutAdapter(data, { ...io, dataPath });
  const n = Math.min(samples, data.count);
  for (let i = 0; i < n; i++) {
    const x = new Float32Array(adapt.sampleSize);
    adapt.copy(i, x);
    feeds.push({ [io.inputName]: new ort.Tensor('float32', x, [1, ...adapt.dims]) });
  }
  return feeds;
}


/**
 * `feeds` as the model takes them now: inputs a pass removed (prune.layers drops a block's past) are
 * left out, and an empty past tensor gets the KV heads and head size its input declares now
 * (prune.heads shrinks them), so one set of calibration samples serves every pass of a recipe.
 */
export function fitFeeds(model: Model, feeds: Feeds[]): Feeds[] {
  const declared = new Map((model.graph.input ?? []).map((v) => [v.name ?? '', (v.type?.tensor_type?.shape?.dim ?? []).map((d) => (d.dim_value === undefined || d.dim_value === null ? undefined : Number(d.dim_value)))]));
  const fit = (name: string, t: ort.Tensor): ort.Tensor => {
    const want = declared.get(name)!;
    if (!isKvCacheName(name) || t.dims.length !== 4 || t.dims[2] !== 0 || want.length !== 4) return t;
    const dims = t.dims.map((d, i) => (i === 1 || i === 3 ? (want[i] ?? d) : d));
    if (dims.every((d, i) => d === t.dims[i])) return t;
    return new ort.Tensor(t.type as 'float32' | 'float16', t.type === 'float16' ? new Uint16Array(0) : new Float32Array(0), dims);
  };
  return feeds.map((f) => Object.fromEntries(Object.entries(f).filter(([name]) => declared.has(name)).map(([name, t]) => [name, fit(name, t)])));
}
