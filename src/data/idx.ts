import { UserError } from '../errors.js';
import { checkLabels, fileRef, normalise, readMaybeGzip } from './images.js';
import type { IdxSpec } from './spec.js';
import type { TensorDataset } from './types.js';

/** An IDX file (MNIST / Fashion-MNIST): magic 0x0000 08 <rank>, big-endian dims, uint8 data. */
export function readIdx(path: string, what: string): { dims: number[]; data: Uint8Array } {
  const bytes = readMaybeGzip(path, what);
  if (bytes.byteLength < 4 || bytes[0] !== 0 || bytes[1] !== 0) throw new UserError(`${path}: not an IDX file (bad magic number)`);
  if (bytes[2] !== 0x08) throw new UserError(`${path}: IDX data type 0x${bytes[2]!.toString(16)}; only unsigned bytes (0x08) are supported`);
  const rank = bytes[3]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 4 + 4 * rank) throw new UserError(`${path}: IDX header truncated`);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const expected = dims.reduce((a, b) => a * b, 1);
  const data = bytes.subarray(4 + 4 * rank);
  if (data.byteLength !== expected) throw new UserError(`${path}: IDX header promises ${expected} bytes of data [${dims.join('×')}], the file holds ${data.byteLength}`);
  return { dims, data };
}

export function loadIdx(spec: IdxSpec, imagesPath: string, labelsPath?: string): TensorDataset {
  const images = readIdx(imagesPath, 'IDX images');
  if (images.dims.length !== 3) throw new UserError(`${imagesPath}: expected an idx3 image file [N, H, W], found rank ${images.dims.length}`);
  const [total, h, w] = images.dims as [number, number, number];
  const count = Math.min(total, spec.limit ?? total);
  let labels: Int32Array | undefined;
  if (labelsPath) {
    const l = readIdx(labelsPath, 'IDX labels');
    if (l.dims.length !== 1) throw new UserError(`${labelsPath}: expected an idx1 label file, found rank ${l.dims.length} (field labels)`);
    checkLabels(Int32Array.from(l.data), total, labelsPath, imagesPath);
    labels = Int32Array.from(l.data.subarray(0, count));
  }
  const shape = [1, h, w];
  return {
    kind: 'tensors',
    sampleShape: shape,
    layout: 'nchw',
    data: normalise(images.data, count, shape, 'nchw', spec, imagesPath),
    count,
    labels,
    files: [fileRef(imagesPath), ...(labelsPath ? [fileRef(labelsPath)] : [])],
    description: `idx ${imagesPath.split('/').pop()}, ${count} images ${h}×${w}${labels ? ' with labels' : ''}, scale ${spec.scale}`,
  };
}
