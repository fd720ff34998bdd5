import { basename } from 'node:path';
import { UserError } from '../errors.js';
import { formatBytes, INPUT_LIMITS, readInputRange, statInput } from '../util/read-file.js';
import { checkLabels, fileRef, normalise, normText, readMaybeGzip } from './images.js';
import type { IdxSpec } from './spec.js';
import type { TensorDataset } from './types.js';

/**
 * An IDX file (MNIST / Fashion-MNIST), gzipped or not (detected by the gzip magic bytes): magic
 * 0x00 0x00, type 0x08 (unsigned byte), rank, then rank big-endian uint32 dims and the data. With
 * `rows`, only the first `rows` entries along the first axis are returned; an uncompressed file is
 * then read only that far (a gzipped one is decompressed whole, up to INPUT_LIMITS.samples).
 */
export function readIdx(path: string, what: string, field?: string, rows?: number): { dims: number[]; data: Uint8Array } {
  const magic = readInputRange(path, what, 0, 2, field);
  if (magic[0] === 0x1f && magic[1] === 0x8b) {
    const bytes = readMaybeGzip(path, what, field);
    const { dims, expected, start } = idxHeader(bytes, path);
    const data = bytes.subarray(start);
    if (data.byteLength !== expected) throw new UserError(`${path}: IDX header promises ${expected} bytes of data [${dims.join('×')}], the file holds ${data.byteLength}`);
    return { dims, data: data.subarray(0, firstRows(dims, expected, rows)) };
  }
  const size = statInput(path, what, field).size;
  const rank = readInputRange(path, what, 0, 4, field)[3] ?? 0;
  const { dims, expected, start } = idxHeader(readInputRange(path, what, 0, 4 + 4 * rank, field), path);
  if (size - start !== expected) throw new UserError(`${path}: IDX header promises ${expected} bytes of data [${dims.join('×')}], the file holds ${size - start}`);
  const n = firstRows(dims, expected, rows);
  if (n > INPUT_LIMITS.samples) throw new UserError(`${path}: ${what} data of ${formatBytes(n)} is more than pare reads (${formatBytes(INPUT_LIMITS.samples)})${field ? ` (field ${field})` : ''}; set limit (or a smaller one)`);
  return { dims, data: readInputRange(path, what, start, n, field) };
}

function idxHeader(bytes: Uint8Array, path: string): { dims: number[]; expected: number; start: number } {
  if (bytes.byteLength < 4 || bytes[0] !== 0 || bytes[1] !== 0) throw new UserError(`${path}: not an IDX file (bad magic number)`);
  if (bytes[2] !== 0x08) throw new UserError(`${path}: IDX data type 0x${bytes[2]!.toString(16)}; only unsigned bytes (0x08) are supported`);
  const rank = bytes[3]!;
  if (bytes.byteLength < 4 + 4 * rank) throw new UserError(`${path}: IDX header truncated (rank ${rank})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  return { dims, expected: dims.reduce((a, b) => a * b, 1), start: 4 + 4 * rank };
}

/** Bytes of the first `rows` entries along the first axis (all of them without `rows`). */
function firstRows(dims: number[], expected: number, rows: number | undefined): number {
  if (rows === undefined || dims.length === 0 || dims[0] === 0) return expected;
  return Math.min(expected, rows * (expected / dims[0]!));
}

/** idx3 images [N, H, W] as NCHW samples [1, H, W], with the idx1 labels [N] when given. */
export function loadIdx(spec: IdxSpec, imagesPath: string, labelsPath?: string): TensorDataset {
  const images = readIdx(imagesPath, 'IDX images file', 'images', spec.limit);
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
