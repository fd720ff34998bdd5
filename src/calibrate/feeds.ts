import type { Dataset } from '../data/types.js';
import { layoutAdapter } from '../data/layout.js';
import { emptyPast, isKvCacheName, lmFeeds, modelIo, type ModelIo } from '../model/io.js';
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
 * After a pass changed the KV cache (prune.heads: fewer heads; prune.layers: fewer layers, renumbered),
 * each feed's empty past as `io` declares it now; token ids, mask and positions stay, since an empty
 * past leaves them as they were.
 */
export function refreshEmptyPast(feeds: Feeds[], io: ModelIo): void {
  for (const feed of feeds) {
    for (const name of Object.keys(feed)) if (isKvCacheName(name)) delete feed[name];
    Object.assign(feed, ortFeeds(emptyPast(io, 1)));
  }
}
