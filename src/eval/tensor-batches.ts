import { layoutAdapter } from '../data/layout.js';
import type { TensorDataset } from '../data/types.js';
import { UserError } from '../errors.js';
import { DataType } from '../model/dtype.js';
import type { HostFeeds } from '../model/io.js';
import { float32ToFloat16 } from '../model/pack.js';

export interface TensorInput {
  inputName: string;
  /** declared input dims; a symbolic dim is -1 */
  inputDims: number[];
  outputName: string;
  /** the input's element type; a float16 input (a model converted by quantize.f16) is fed half floats */
  inputType?: number;
  dataPath?: string;
}

/**
 * The dataset in model-sized batches, in the model's input layout: the model's fixed batch, or 64
 * where its batch axis is symbolic. `start` is the first sample's index.
 */
export function* tensorBatches(data: TensorDataset, io: TensorInput): Generator<{ start: number; n: number; feeds: HostFeeds }> {
  const adapt = layoutAdapter(data, io);
  const fixedBatch = io.inputDims[0]! > 0 ? io.inputDims[0]! : 0;
  const batch = fixedBatch || 64;
  if (fixedBatch > 1 && data.count % fixedBatch !== 0) {
    throw new UserError(`${io.dataPath ?? 'dataset'}: ${data.count} samples do not fill the model's fixed batch of ${fixedBatch}`);
  }
  const per = adapt.sampleSize;
  for (let start = 0; start < data.count; start += batch) {
    const n = Math.min(batch, data.count - start);
    const input = new Float32Array(n * per);
    for (let k = 0; k < n; k++) adapt.copy(start + k, input.subarray(k * per, (k + 1) * per));
    const dims = [n, ...adapt.dims];
    const feeds: HostFeeds = { [io.inputName]: io.inputType === DataType.FLOAT16 ? { type: 'float16', data: float32ToFloat16(input), dims } : { type: 'float32', data: input, dims } };
    yield { start, n, feeds };
  }
}
