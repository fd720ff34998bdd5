import { basename } from 'node:path';
import { UserError } from '../errors.js';
import { fileRef, normalise, normText } from './images.js';
import { readLabelFile } from './labels.js';
import { readNpy } from './npy.js';
import type { NpySpec } from './spec.js';
import type { TensorDataset } from './types.js';

/** A .npy array whose first axis indexes samples, with optional labels, as a float32 dataset. */
export function loadNpy(spec: NpySpec, path: string, labelsPath?: string, targetsPath?: string): TensorDataset {
  const arr = readNpy(path, '.npy file', 'path', spec.limit);
  if (arr.shape.length < 2) throw new UserError(`${path}: expected samples along the first axis and at least one feature axis, found shape (${arr.shape.join(', ')})`);
  if (arr.shape[0] === 0) throw new UserError(`${path}: the array holds no samples (shape (${arr.shape.join(', ')}))`);
  const total = arr.shape[0]!;
  const sampleShape = arr.shape.slice(1);
  const count = Math.min(total, spec.limit ?? total);
  const labels = labelsPath ? readLabelFile(labelsPath, total, count, spec.labels_dtype ?? 'uint8', path, 'samples') : undefined;
  if (spec.layout && sampleShape.length !== 3) {
    throw new UserError(`${path}: layout ${spec.layout} needs samples with 3 axes, found (${sampleShape.join(', ')}) (field layout)`);
  }
  const layout = spec.layout;
  let targets: TensorDataset['targets'];
  if (targetsPath) {
    const t = readNpy(targetsPath, 'targets file', 'targets', count);
    if (t.shape[0] !== total) throw new UserError(`${targetsPath}: targets: ${t.shape[0] ?? 0} targets for ${total} samples in ${path} (field targets)`);
    targets = { data: Float32Array.from(t.values), sampleShape: t.shape.slice(1) };
  }
  return {
    kind: 'tensors',
    sampleShape,
    layout,
    data: normalise(arr.values, count, sampleShape, layout, spec, path),
    count,
    labels,
    ...(targets ? { targets } : {}),
    files: [fileRef(path), ...(labelsPath ? [fileRef(labelsPath)] : []), ...(targetsPath ? [fileRef(targetsPath)] : [])],
    description: `npy ${basename(path)}, ${count}${count < total ? ` of ${total}` : ''} × (${sampleShape.join(', ')})${layout ? ` ${layout}` : ''}${labels ? ' with labels' : ''}${targets ? ` with targets ${basename(targetsPath!)} (${targets.sampleShape.join(', ')})` : ''}${normText(spec)}`,
  };
}
