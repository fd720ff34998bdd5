import { basename } from 'node:path';
import { UserError } from '../errors.js';
import { checkLabels, fileRef, normalise, normText, readMaybeGzip } from './images.js';
import type { IdxSpec } from './spec.js';
import type { TensorDataset } from './types.js';

/**
 * An IDX file (MNIST / Fashion-MNIST), gzipped or not (detected by the gzip magic bytes): magic
 * 0x00 0x00, type 0x08 (unsigned byte), rank, then rank big-endian uint32 dims and the data.
 */
export function readIdx(path: string, what: string, field?: string): { dims: number[]; data: Uint8Array } {
  const bytes = readMaybeGzip(path, what, field);
  if (bytes.byteLength < 4 || bytes[0] !== 0 || bytes[1] !== 0) throw new UserError(`${path}: not an IDX file (bad magic number)`);
  if (bytes[2] !== 0x08) throw new UserError(`${path}: IDX data type 0x${bytes[2]!.toString(16)}; only unsigned bytes (0x08) are supported`);
  const rank = bytes[3]!;
  if (bytes.byteLength < 4 + 4 * rank) throw new UserError(`${path}: IDX header truncated (rank ${rank})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const expected = dims.reduce((a, b) => a * b, 1);
  const data = bytes.subarray(4 + 4 * rank);
  if (data.byteLength !== expected) throw new UserError(`${path}: IDX header promises ${expected} bytes of data [${dims.join('×')}], the file holds ${data.byteLength}`);
  return { dims, data };
}

/** idx3 images [N, H, W] as NCHW samples [1, H, W], with the idx1 labels [N] when given. */
export function loadIdx(spec: IdxSpec, imagesPath: string, labelsPath?: string): TensorDataset {
  const images = readIdx(imagesPath, 'IDX images file', 'images');
  if (images.dims.length !== 3) throw new UserError(`${imagesPath}: images: expected an idx3 file [N, H, W], found rank ${images.dims.length}`);
  const [total, h, w] = images.dims as [number, number, number];
  if (total === 0) throw new UserError(`${imagesPath}: images: the file holds no images`);
  const count = Math.min(total, spec.limit ?? total);
  let labels: Int32Array | undefined;
  if (labelsPath) {
    const l = readIdx(labelsPath, 'IDX labels file', 'labels');
    if (l.dims.length !== 1) throw new UserError(`${labelsPath}: labels: expected an idx1 file [N], found rank ${l.dims.length}`);
    checkLabels(l.data, total, labelsPath, imagesPath);
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
    description: `idx ${basename(imagesPath)}, ${count}${count < total ? ` of ${total}` : ''} images ${h}×${w}${labels ? ` with labels ${basename(labelsPath!)}` : ''}${normText(spec)}`,
  };
}
