import type { Dataset } from '../data/types.js';
import { layoutAdapter } from '../data/layout.js';
import { modelIo } from '../model/io.js';
import type { Model } from '../model/model.js';
import { ort } from '../runtime/ort.js';

export type Feeds = Record<string, ort.Tensor>;

/**
 * The calibration inputs as ONNX Runtime feeds, one sample per run: token sequences (cut to
 * `seqLen` when given) as int64 [1, L], tensor samples in the model's input layout.
 */
export function calibrationFeeds(model: Model, data: Dataset, samples: number, seqLen?: number, dataPath?: string): Feeds[] {
  const io = modelIo(model);
  const feeds: Feeds[] = [];
  if (data.kind === 'tokens') {
    for (const seq of data.sequences.slice(0, samples)) {
      const ids = seq.subarray(0, seqLen ?? seq.length);
      feeds.push({ [io.inputName]: new ort.Tensor('int64', BigInt64Array.from(ids, (v) => BigInt(v)), [1, ids.length]) });
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

