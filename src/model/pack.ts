/**
 * Storage conversions over typed arrays: IEEE binary16 and bfloat16 (round to nearest, ties to
 * even), ONNX 4-bit packing, and typed views over little-endian raw tensor bytes.
 *
 * Floats are converted on their bit patterns (Uint32Array views of Float32Array buffers), so no
 * value passes through a JS number where a NaN payload could be lost, and loops allocate nothing.
 * NaN keeps its sign and the top bits of its payload; if those bits are all zero the quiet bit is
 * set so the result stays NaN.
 */
import { DataType, dtypeName } from './dtype.js';

export type NumericArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

// ---------------------------------------------------------------- float16 (IEEE binary16)

/** float32 bits -> float16 bits, round to nearest even; overflow -> ±inf. */
export function f32BitsToF16Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a >= 0x47800000) {
    // |x| >= 65536, inf or NaN
    if (a <= 0x7f800000) return sign | 0x7c00;
    const payload = (a >>> 13) & 0x3ff;
    return sign | 0x7c00 | (payload === 0 ? 0x200 : payload);
  }
  if (a < 0x38800000) {
    // |x| < 2^-14: float16 subnormal or zero, value m·2^-24 with m = mant >> (126 - e), rounded
    const e = a >>> 23;
    if (e < 102) return sign; // |x| < 2^-25, under half the smallest subnormal: zero
    const mant = (a & 0x7fffff) | 0x800000;
    const shift = 126 - e; // 14..24
    let m = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (m & 1) === 1)) m++;
    return sign | m;
  }
  // normal: rebias exponent 127 -> 15, add half-ulp minus one plus the lowest kept bit (RNE);
  // a mantissa carry rolls into the exponent, and past 65504 into inf
  return sign | ((a - 0x38000000 + 0xfff + ((a >>> 13) & 1)) >>> 13);
}

/** float16 bits -> float32 bits (exact). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return (sign | 0x7f800000 | (m << 13)) >>> 0;
  if (e !== 0) return (sign | ((e + 112) << 23) | (m << 13)) >>> 0;
  if (m === 0) return sign >>> 0;
  // subnormal m·2^-24: shift the leading one up to bit 10
  const s = Math.clz32(m) - 21;
  return (sign | ((113 - s) << 23) | (((m << s) & 0x3ff) << 13)) >>> 0;
}

export function float32ToFloat16(values: Float32Array, out: Uint16Array = new Uint16Array(values.length)): Uint16Array {
  const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < u.length; i++) out[i] = f32BitsToF16Bits(u[i]!);
  return out;
}

export function float16ToFloat32(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  const u = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < bits.length; i++) u[i] = f16BitsToF32Bits(bits[i]!);
  return out;
}

// ---------------------------------------------------------------- bfloat16

/** float32 bits -> bfloat16 bits, round to nearest even; overflow -> ±inf. */
export function f32BitsToBf16Bits(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) {
    const h = u >>> 16;
    return (h & 0x7f) === 0 ? h | 0x40 : h;
  }
  return ((u >>> 0) + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}

export function float32ToBfloat16(values: Float32Array, out: Uint16Array = new Uint16Array(values.length)): Uint16Array {
  const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < u.length; i++) out[i] = f32BitsToBf16Bits(u[i]!);
  return out;
}

export function bfloat16ToFloat32(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  const u = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i]! << 16;
  return out;
}

// ---------------------------------------------------------------- 4-bit packing (ONNX layout)

function pack4(values: ArrayLike<number>, lo: number, hi: number, what: string): Uint8Array {
  const n = values.length;
  const out = new Uint8Array((n + 1) >>> 1);
  for (let i = 0; i < n; i++) {
    const v = values[i]!;
    if (!(v >= lo && v <= hi) || v !== Math.trunc(v)) {
      throw new RangeError(`pack${what}: element ${i} is ${v}, expected an integer in ${lo}..${hi}`);
    }
    // element i even -> low nibble, odd -> high nibble
    out[i >>> 1] |= (v & 0xf) << ((i & 1) << 2);
  }
  return out;
}

function checkPacked(bytes: Uint8Array, count: number, what: string): void {
  if (!Number.isInteger(count) || count < 0 || bytes.length < (count + 1) >>> 1) {
    throw new RangeError(`unpack${what}: ${count} elements need ${(count + 1) >>> 1} bytes, got ${bytes.length}`);
  }
}

/** Pack values in −8..7 two per byte, element 2k in the low nibble of byte k; an odd tail leaves the high nibble 0. */
export function packInt4(values: ArrayLike<number>): Uint8Array {
  return pack4(values, -8, 7, 'Int4');
}

/** Pack values in 0..15 two per byte, element 2k in the low nibble of byte k. */
export function packUint4(values: ArrayLike<number>): Uint8Array {
  return pack4(values, 0, 15, 'Uint4');
}

/** Pack values in 0..3 four per byte, element 4k + i in bits 2i..2i+1 of byte k (MatMulNBits' 2-bit layout). */
export function packUint2(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array((values.length + 3) >>> 2);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!(v >= 0 && v <= 3) || v !== Math.trunc(v)) throw new RangeError(`packUint2: element ${i} is ${v}, expected an integer in 0..3`);
    out[i >>> 2] |= v << ((i & 3) << 1);
  }
  return out;
}

export function unpackInt4(bytes: Uint8Array, count: number, out: Int8Array = new Int8Array(count)): Int8Array {
  checkPacked(bytes, count, 'Int4');
  for (let i = 0; i < count; i++) {
    const nib = (bytes[i >>> 1]! >>> ((i & 1) << 2)) & 0xf;
    out[i] = (nib << 28) >> 28; // sign-extend the nibble
  }
  return out;
}

export function unpackUint4(bytes: Uint8Array, count: number, out: Uint8Array = new Uint8Array(count)): Uint8Array {
  checkPacked(bytes, count, 'Uint4');
  for (let i = 0; i < count; i++) out[i] = (bytes[i >>> 1]! >>> ((i & 1) << 2)) & 0xf;
  return out;
}

// ---------------------------------------------------------------- raw bytes <-> typed arrays

const HOST_IS_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

type ViewCtor = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): NumericArray;
  readonly BYTES_PER_ELEMENT: number;
};

const VIEWS: Partial<Record<number, ViewCtor>> = {
  [DataType.FLOAT]: Float32Array,
  [DataType.DOUBLE]: Float64Array,
  [DataType.INT8]: Int8Array,
  [DataType.UINT8]: Uint8Array,
  [DataType.BOOL]: Uint8Array,
  [DataType.INT16]: Int16Array,
  [DataType.UINT16]: Uint16Array,
  [DataType.FLOAT16]: Uint16Array,
  [DataType.BFLOAT16]: Uint16Array,
  [DataType.INT32]: Int32Array,
  [DataType.UINT32]: Uint32Array,
  [DataType.INT64]: BigInt64Array,
  [DataType.UINT64]: BigUint64Array,
};

/**
 * A typed array over little-endian raw tensor bytes: float16/bfloat16 give their bits as a
 * Uint16Array, bool a Uint8Array of 0/1. Shares `bytes`' memory unless its byte offset is not a
 * multiple of the element size, in which case the bytes are copied.
 */
export function typedView(dataType: number, bytes: Uint8Array): NumericArray {
  const Ctor = VIEWS[dataType];
  if (!Ctor) throw new Error(`typedView: no typed view for ${dtypeName(dataType)}; 4-bit types need unpackInt4/unpackUint4`);
  if (!HOST_IS_LE && Ctor.BYTES_PER_ELEMENT > 1) throw new Error('typedView: big-endian hosts are not supported');
  const size = Ctor.BYTES_PER_ELEMENT;
  if (bytes.byteLength % size !== 0) {
    throw new Error(`typedView: ${bytes.byteLength} bytes is not a whole number of ${dtypeName(dataType)} elements`);
  }
  // Uint8Array.prototype.slice copies; Buffer#slice would only make another misaligned view
  const src = bytes.byteOffset % size === 0 ? bytes : Uint8Array.prototype.slice.call(bytes);
  return new Ctor(src.buffer, src.byteOffset, src.byteLength / size);
}

/**
 * Decode raw bytes of any float or integer type to a new Float32Array. `count` is needed only for
 * 4-bit types with an odd element count (default: two per byte).
 */
export function toFloat32(dataType: number, bytes: Uint8Array, count?: number): Float32Array {
  switch (dataType) {
    case DataType.INT4:
    case DataType.UINT4: {
      const n = count ?? bytes.length * 2;
      const out = new Float32Array(n);
      const q = dataType === DataType.INT4 ? unpackInt4(bytes, n) : unpackUint4(bytes, n);
      for (let i = 0; i < n; i++) out[i] = q[i]!;
      return out;
    }
    case DataType.FLOAT16:
      return float16ToFloat32(typedView(dataType, bytes) as Uint16Array);
    case DataType.BFLOAT16:
      return bfloat16ToFloat32(typedView(dataType, bytes) as Uint16Array);
    case DataType.FLOAT:
      return new Float32Array(typedView(dataType, bytes) as Float32Array);
    case DataType.INT64:
    case DataType.UINT64: {
      const v = typedView(dataType, bytes) as BigInt64Array | BigUint64Array;
      const out = new Float32Array(v.length);
      for (let i = 0; i < v.length; i++) out[i] = Number(v[i]!);
      return out;
    }
    default: {
      if (!VIEWS[dataType]) throw new Error(`toFloat32: cannot decode ${dtypeName(dataType)}`);
      return new Float32Array(typedView(dataType, bytes) as Exclude<NumericArray, BigInt64Array | BigUint64Array>);
    }
  }
}

/** Encode float32 values as raw little-endian bytes of float32, float16, bfloat16 or float64. */
export function fromFloat32(dataType: number, values: Float32Array): Uint8Array {
  let out: Float32Array | Uint16Array | Float64Array;
  switch (dataType) {
    case DataType.FLOAT:
      out = new Float32Array(values);
      break;
    case DataType.FLOAT16:
      out = float32ToFloat16(values);
      break;
    case DataType.BFLOAT16:
      out = float32ToBfloat16(values);
      break;
    case DataType.DOUBLE:
      out = new Float64Array(values);
      break;
    default:
      throw new Error(`fromFloat32: cannot encode ${dtypeName(dataType)}; expected float32, float16, bfloat16 or float64`);
  }
  if (!HOST_IS_LE) throw new Error('fromFloat32: big-endian hosts are not supported');
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}
