import { UserError } from '../errors.js';
import { formatBytes, INPUT_LIMITS, readInputRange, statInput } from '../util/read-file.js';

/** NumPy writes headers of a few hundred bytes; a longer one is not a .npy header. */
const MAX_HEADER = 65536;

/**
 * A NumPy .npy array (format 1.0–3.0: magic, version, little-endian header length (uint16 in 1.0,
 * uint32 after), a Python-dict header, then the data in C order) as float64 values. With `rows`,
 * only the first `rows` entries along the first axis are read (`shape` is still the whole array's).
 */
export function readNpy(path: string, what = '.npy file', field = 'path', rows?: number): { shape: number[]; values: Float64Array; integer: boolean } {
  const size = statInput(path, what, field).size;
  const head = readInputRange(path, what, 0, 12, field);
  if (head.byteLength < 10 || head.toString('latin1', 0, 6) !== '\x93NUMPY') throw new UserError(`${path}: not a .npy file (bad magic)`);
  const major = head[6]!;
  if (major < 1 || major > 3) throw new UserError(`${path}: .npy format version ${major}.${head[7]} is not supported (1.0 to 3.0 are)`);
  const start = major === 1 ? 10 : 12;
  if (head.byteLength < start) throw new UserError(`${path}: .npy header truncated`);
  const headerLen = major === 1 ? head.readUInt16LE(8) : head.readUInt32LE(8);
  if (start + headerLen > size) throw new UserError(`${path}: .npy header of ${headerLen} bytes runs past the end of the file`);
  if (headerLen > MAX_HEADER) throw new UserError(`${path}: .npy header of ${headerLen} bytes is longer than a NumPy header (at most ${MAX_HEADER})`);
  const header = readInputRange(path, what, start, headerLen, field).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new UserError(`${path}: .npy header is not readable: ${header.trim()}`);
  if (fortran === 'True') throw new UserError(`${path}: Fortran-order arrays are not supported (fortran_order: True); save with np.ascontiguousarray`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new UserError(`${path}: .npy shape (${shapeText}) is not a tuple of sizes`);
  const count = shape.reduce((a, b) => a * b, 1);
  // one-byte types carry '|' (or any byte order); wider ones must be little-endian ('<', or '=' as NumPy writes on little-endian hosts)
  const kind = DTYPES[descr.length === 3 && descr[2] === '1' ? `|${descr.slice(1)}` : descr.replace(/^=/, '<')];
  if (!kind) {
    const why = descr.startsWith('>') ? 'big-endian data is not supported; save with arr.astype(arr.dtype.newbyteorder("<"))' : 'supported: little-endian f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 and b1';
    throw new UserError(`${path}: dtype '${descr}': ${why}`);
  }
  const [width, get, integer] = kind;
  const offset = start + headerLen;
  if (size - offset !== count * width) throw new UserError(`${path}: header shape (${shape.join(', ')}) of ${descr} needs ${count * width} bytes of data, the file holds ${size - offset}`);
  // the rows asked for, as float64: capped like every sample read (8 bytes a value in memory)
  const perRow = shape.length > 0 && shape[0]! > 0 ? count / shape[0]! : count;
  const n = rows === undefined || shape.length === 0 ? count : Math.min(count, rows * perRow);
  if (n * 8 > INPUT_LIMITS.samples) {
    throw new UserError(`${path}: ${n} values are more than pare reads (${formatBytes(INPUT_LIMITS.samples)} as float64)${fieldNote(field)}; set limit (or a smaller one)`);
  }
  const buf = readInputRange(path, what, offset, n * width, field);
  if (buf.byteLength !== n * width) throw new UserError(`${path}: the file ended while it was read`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = get(view, i * width);
  return { shape, values, integer };
}

const DTYPES: Record<string, [number, (v: DataView, o: number) => number, boolean]> = {
  '<f4': [4, (v, o) => v.getFloat32(o, true), false],
  '<f8': [8, (v, o) => v.getFloat64(o, true), false],
  '|u1': [1, (v, o) => v.getUint8(o), true],
  '|i1': [1, (v, o) => v.getInt8(o), true],
  '|b1': [1, (v, o) => (v.getUint8(o) ? 1 : 0), true],
  '<u2': [2, (v, o) => v.getUint16(o, true), true],
  '<i2': [2, (v, o) => v.getInt16(o, true), true],
  '<u4': [4, (v, o) => v.getUint32(o, true), true],
  '<i4': [4, (v, o) => v.getInt32(o, true), true],
  '<i8': [8, (v, o) => Number(v.getBigInt64(o, true)), true],
  '<u8': [8, (v, o) => Number(v.getBigUint64(o, true)), true],
};

const fieldNote = (field: string) => ` (field ${field})`;
