import { UserError } from '../errors.js';
import { readInputFile } from '../model/onnx-io.js';
import { checkLabels, fileRef, normalise } from './images.js';
import type { NpySpec } from './spec.js';
import type { TensorDataset } from './types.js';

/** A NumPy .npy array (format 1.0–3.0, C order, little-endian numeric dtypes) as float64 values. */
export function readNpy(path: string, what = 'array'): { shape: number[]; values: Float64Array; integer: boolean } {
  const buf = readInputFile(path, what);
  if (buf.byteLength < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new UserError(`${path}: not a .npy file (bad magic)`);
  const major = buf[6]!;
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', start, start + headerLen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new UserError(`${path}: .npy header is not readable: ${header.trim()}`);
  if (fortran === 'True') throw new UserError(`${path}: Fortran-order arrays are not supported; save with np.ascontiguousarray`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const kinds: Record<string, [number, (v: DataView, o: number) => number, boolean]> = {
    '<f4': [4, (v, o) => v.getFloat32(o, true), false],
    '<f8': [8, (v, o) => v.getFloat64(o, true), false],
    '|u1': [1, (v, o) => v.getUint8(o), true],
    '|i1': [1, (v, o) => v.getInt8(o), true],
    '|b1': [1, (v, o) => v.getUint8(o), true],
    '<u2': [2, (v, o) => v.getUint16(o, true), true],
    '<i2': [2, (v, o) => v.getInt16(o, true), true],
    '<u4': [4, (v, o) => v.getUint32(o, true), true],
    '<i4': [4, (v, o) => v.getInt32(o, true), true],
    '<i8': [8, (v, o) => Number(v.getBigInt64(o, true)), true],
    '<u8': [8, (v, o) => Number(v.getBigUint64(o, true)), true],
  };
  const kind = kinds[descr];
  if (!kind) throw new UserError(`${path}: dtype '${descr}' is not supported (little-endian ints, float32/64 and bool are)`);
  const [width, get, integer] = kind;
  const offset = start + headerLen;
  if (buf.byteLength - offset !== count * width) throw new UserError(`${path}: header shape (${shape.join(', ')}) needs ${count * width} bytes of data, the file holds ${buf.byteLength - offset}`);
  const view = new DataView(buf.buffer, buf.byteOffset + offset, count * width);
  const values = new Float64Array(count);
  for (let i = 0; i < count; i++) values[i] = get(view, i * width);
  return { shape, values, integer };
}

export function loadNpy(spec: NpySpec, path: string, labelsPath?: string): TensorDataset {
  const arr = readNpy(path);
  if (arr.shape.length < 2) throw new UserError(`${path}: expected samples along the first axis, found shape (${arr.shape.join(', ')})`);
  const total = arr.shape[0]!;
  const sampleShape = arr.shape.slice(1);
  const count = Math.min(total, spec.limit ?? total);
  let labels: Int32Array | undefined;
  if (labelsPath) {
    const l = readNpy(labelsPath, 'labels');
    if (!l.integer || l.shape.length !== 1) throw new UserError(`${labelsPath}: labels must be a 1-D integer array, found ${l.integer ? '' : 'float '}shape (${l.shape.join(', ')}) (field labels)`);
    checkLabels(Int32Array.from(l.values), total, labelsPath, path);
    labels = Int32Array.from(l.values.subarray(0, count));
  }
  const layout = sampleShape.length === 3 ? spec.layout : undefined;
  return {
    kind: 'tensors',
    sampleShape,
    layout,
    data: normalise(arr.values, count, sampleShape, layout, spec, path),
    count,
    labels,
    files: [fileRef(path), ...(labelsPath ? [fileRef(labelsPath)] : [])],
    description: `npy ${path.split('/').pop()}, ${count} × (${sampleShape.join(', ')})${labels ? ' with labels' : ''}`,
  };
}
