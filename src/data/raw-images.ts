import { basename } from 'node:path';
import { UserError } from '../errors.js';
import { readInputFile } from '../util/read-file.js';
import { checkLabels, fileRef, normalise, normText } from './images.js';
import type { ImagesSpec } from './spec.js';
import type { TensorDataset } from './types.js';

/** Raw uint8 images back to back, each of `shape` in `layout` order, with optional uint8 labels (one byte per image). */
export function loadRawImages(spec: ImagesSpec, path: string, labelsPath?: string): TensorDataset {
  const bytes = readInputFile(path, 'images');
  const per = spec.shape.reduce((a, b) => a * b, 1);
  if (bytes.byteLength === 0 || bytes.byteLength % per !== 0) {
    throw new UserError(`${path}: shape: ${bytes.byteLength} bytes is not a whole number of [${spec.shape.join('×')}] uint8 images (${per} bytes each)`);
  }
  const total = bytes.byteLength / per;
  const count = Math.min(total, spec.limit ?? total);
  let labels: Int32Array | undefined;
  if (labelsPath) {
    const l = readInputFile(labelsPath, 'labels');
    checkLabels(l, total, labelsPath, path);
    labels = Int32Array.from(l.subarray(0, count));
  }
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
