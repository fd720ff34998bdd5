import { basename } from 'node:path';
import { UserError } from '../errors.js';
import { formatBytes, INPUT_LIMITS, readInputRange, statInput } from '../util/read-file.js';
import { fileRef, normalise, normText } from './images.js';
import { readLabelFile } from './labels.js';
import type { ImagesSpec } from './spec.js';
import type { TensorDataset } from './types.js';

/** Raw uint8 images back to back, each of `shape` in `layout` order, with optional labels (raw integers of labels_dtype, or .npy). */
export function loadRawImages(spec: ImagesSpec, path: string, labelsPath?: string): TensorDataset {
  const size = statInput(path, 'images file', 'path').size;
  const per = spec.shape.reduce((a, b) => a * b, 1);
  if (size === 0 || size % per !== 0) {
    throw new UserError(`${path}: shape: ${size} bytes is not a whole number of [${spec.shape.join('×')}] uint8 images (${per} bytes each)`);
  }
  const total = size / per;
  const count = Math.min(total, spec.limit ?? total);
  // only the images the limit asks for are read
  if (count * per > INPUT_LIMITS.samples) {
    throw new UserError(`${path}: limit: ${count} images of ${per} bytes are more than pare reads (${formatBytes(INPUT_LIMITS.samples)}); set limit (or a smaller one)`);
  }
  const bytes = readInputRange(path, 'images file', 0, count * per, 'path');
  const labels = labelsPath ? readLabelFile(labelsPath, total, count, spec.labels_dtype ?? 'uint8', path) : undefined;
  return {
    kind: 'tensors',
    sampleShape: spec.shape,
    layout: spec.layout,
    data: normalise(bytes, count, spec.shape, spec.layout, spec, path),
    count,
    labels,
    files: [fileRef(path), ...(labelsPath ? [fileRef(labelsPath)] : [])],
    description: `images ${basename(path)}, ${count}${count < total ? ` of ${total}` : ''} × [${spec.shape.join('×')}] ${spec.layout}${labels ? ` with labels ${basename(labelsPath!)}` : ''}${normText(spec)}`,
  };
}
