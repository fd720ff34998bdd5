import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/model/dtype.js';
import {
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  fromFloat32,
  packInt4,
  packUint4,
  toFloat32,
  typedView,
  unpackInt4,
  unpackUint4,
} from '../../src/model/pack.js';

// ---- independent references: plain math and DataView, no bit tricks shared with pack.ts

/** float16 bits -> value, from the IEEE 754 definition. */
function refF16Value(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 31) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** bfloat16 bits -> value: the top half of a float32, via DataView. */
function refBf16Value(h: number): number {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setUint16(2, h, true);
  return dv.getFloat32(0, true);
}

const f32FromBits = (u: number) => {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setUint32(0, u >>> 0, true);
  return dv.getFloat32(0, true);
};

/**
 * Round x to the nearest of the ascending finite non-negative grid `vals` (bits `bits`), ties to
 * the even bit pattern; `overflow` is where the next step past the largest value would be (inf).
 */
function refRound(x: number, vals: number[], bits: number[], overflow: number, infBits: number, signBit: number): number {
  if (Number.isNaN(x)) return NaN;
  const sign = x < 0 || Object.is(x, -0) ? signBit : 0;
  const a = Math.abs(x);
  const last = vals.length - 1;
  if (a >= overflow) return sign | infBits;
  let lo = a >= vals[last]! ? last : 0;
  let hi = last;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (vals[mid]! <= a) lo = mid;
    else hi = mid;
  }
  // candidates: vals[lo] <= a and the next step up (vals[lo+1] or inf at `overflow`)
  const down = vals[lo]!;
  const upV = lo < last ? vals[lo + 1]! : overflow;
  const upB = lo < last ? bits[lo + 1]! : infBits;
  if (a === down) return sign | bits[lo]!;
  const dDown = a - down;
  const dUp = upV - a;
  if (dDown < dUp) return sign | bits[lo]!;
  if (dUp < dDown) return sign | upB;
  return sign | ((bits[lo]! & 1) === 0 ? bits[lo]! : upB);
}

function grid(decode: (h: number) => number, maxFinite: number) {
  const vals: number[] = [];
  const bits: number[] = [];
  for (let h = 0; h <= maxFinite; h++) {
    vals.push(decode(h));
    bits.push(h);
  }
  return { vals, bits };
}

const F16 = grid(refF16Value, 0x7bff); // 0 .. 65504
const BF16 = grid(refBf16Value, 0x7f7f); // 0 .. max bfloat16
const refToF16 = (x: number) => refRound(x, F16.vals, F16.bits, 65536, 0x7c00, 0x8000);
const refToBf16 = (x: number) => refRound(x, BF16.vals, BF16.bits, 2 ** 128, 0x7f80, 0x8000);

const ALL16 = Uint16Array.from({ length: 65536 }, (_, i) => i);

function isNaN16(h: number, expBits: number, mantMask: number): boolean {
  return (h & expBits) === expBits && (h & mantMask) !== 0;
}

/** Check the encoder on every f32 value in `xs` against the reference; report the first mismatch. */
function expectEncodes(xs: Float32Array, enc: (v: Float32Array) => Uint16Array, ref: (x: number) => number, nan: (h: number) => boolean) {
  const got = enc(xs);
  let bad = -1;
  for (let i = 0; i < xs.length && bad < 0; i++) {
    const r = ref(xs[i]!);
    if (Number.isNaN(r) ? !nan(got[i]!) : got[i] !== r) bad = i;
  }
  if (bad >= 0) {
    const x = xs[bad]!;
    expect({ x, got: got[bad]!.toString(16), want: ref(x).toString(16) }).toEqual({ x, got: 'match' });
  }
}

/** Midpoints between consecutive grid values (the ties), and the float32 neighbours on each side. */
function tiesAndNeighbours(vals: number[]): Float32Array {
  const out: number[] = [];
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i + 1 < vals.length; i++) {
    const mid = (vals[i]! + vals[i + 1]!) / 2;
    f[0] = mid;
    if (f[0] !== mid) continue; // not representable in float32 (bfloat16 subnormal ties below 2^-149)
    const b = u[0]!;
    for (const s of [1, -1]) for (const d of [-1, 0, 1]) out.push(s * f32FromBits(b + d));
  }
  return Float32Array.from(out);
}

describe('float16', () => {
  it('float16 -> float32 equals the IEEE definition for all 65536 bit patterns', () => {
    const f = float16ToFloat32(ALL16);
    for (let h = 0; h < 65536; h++) {
      const r = refF16Value(h);
      if (Number.isNaN(r)) expect(Number.isNaN(f[h]), `h=${h.toString(16)}`).toBe(true);
      else if (!Object.is(f[h], r)) expect({ h: h.toString(16), got: f[h] }).toEqual({ h: h.toString(16), got: r });
    }
  });

  it('every float16 bit pattern round-trips float16 -> float32 -> float16 exactly (NaN stays NaN)', () => {
    const back = float32ToFloat16(float16ToFloat32(ALL16));
    for (let h = 0; h < 65536; h++) {
      if (isNaN16(h, 0x7c00, 0x3ff)) expect(isNaN16(back[h]!, 0x7c00, 0x3ff)).toBe(true);
      else if (back[h] !== h) expect(back[h]!.toString(16)).toBe(h.toString(16));
    }
    // payloads survive too: the top 10 payload bits are kept
    expect(back[0x7c01]).toBe(0x7c01);
    expect(back[0xfe00]).toBe(0xfe00);
  });

  it('float32 -> float16 rounds every tie to even and its float32 neighbours to nearest', () => {
    expectEncodes(tiesAndNeighbours(F16.vals), (v) => float32ToFloat16(v), refToF16, (h) => isNaN16(h, 0x7c00, 0x3ff));
  });

  it('float32 -> float16 matches the nearest-even reference on a stride through all float32 bit patterns', () => {
    const n = 1 << 20;
    const u = new Uint32Array(n);
    for (let i = 0; i < n; i++) u[i] = Math.imul(i, 4099) >>> 0; // 4099 odd: distinct patterns spread over 2^32
    expectEncodes(new Float32Array(u.buffer), (v) => float32ToFloat16(v), refToF16, (h) => isNaN16(h, 0x7c00, 0x3ff));
  });

  it('float32 -> float16 hand-picked cases', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [1 + 2 ** -11, 0x3c00], // tie -> even (down)
      [1 + 3 * 2 ** -11, 0x3c02], // tie -> even (up)
      [1 + 2 ** -11 + 2 ** -23, 0x3c01], // just above the tie
      [65504, 0x7bff],
      [65519, 0x7bff],
      [65520, 0x7c00], // tie above max -> inf
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie -> even zero
      [2 ** -25 + 2 ** -40, 0x0001],
      [3 * 2 ** -25, 0x0002], // subnormal tie -> even
      [-(2 ** -26), 0x8000],
      [2 ** -14 - 2 ** -25, 0x0400], // largest subnormal + half ulp: tie rounds up to the smallest normal (even)
      [1e-45, 0x0000], // float32 subnormal
    ];
    const got = float32ToFloat16(Float32Array.from(cases.map((c) => c[0])));
    expect(Array.from(got, (h) => h.toString(16))).toEqual(cases.map((c) => c[1].toString(16)));
    expect(float32ToFloat16(Float32Array.of(NaN))[0]! & 0x7e00).toBe(0x7e00);
  });
});

describe('bfloat16', () => {
  it('bfloat16 -> float32 is the top half of the float32 for all 65536 bit patterns', () => {
    const f = bfloat16ToFloat32(ALL16);
    for (let h = 0; h < 65536; h++) {
      const r = refBf16Value(h);
      if (Number.isNaN(r)) expect(Number.isNaN(f[h])).toBe(true);
      else if (!Object.is(f[h], r)) expect({ h, got: f[h] }).toEqual({ h, got: r });
    }
  });

  it('every bfloat16 bit pattern round-trips exactly (NaN stays NaN)', () => {
    const back = float32ToBfloat16(bfloat16ToFloat32(ALL16));
    for (let h = 0; h < 65536; h++) {
      if (isNaN16(h, 0x7f80, 0x7f)) expect(isNaN16(back[h]!, 0x7f80, 0x7f)).toBe(true);
      else if (back[h] !== h) expect(back[h]!.toString(16)).toBe(h.toString(16));
    }
  });

  it('float32 -> bfloat16 rounds every tie to even and its neighbours to nearest', () => {
    expectEncodes(tiesAndNeighbours(BF16.vals), (v) => float32ToBfloat16(v), refToBf16, (h) => isNaN16(h, 0x7f80, 0x7f));
  });

  it('float32 -> bfloat16 matches the reference on a stride through all float32 bit patterns', () => {
    const n = 1 << 20;
    const u = new Uint32Array(n);
    for (let i = 0; i < n; i++) u[i] = Math.imul(i, 4099) >>> 0;
    expectEncodes(new Float32Array(u.buffer), (v) => float32ToBfloat16(v), refToBf16, (h) => isNaN16(h, 0x7f80, 0x7f));
  });

  it('float32 -> bfloat16 keeps NaN a NaN even when the payload sits in the dropped bits', () => {
    const x = new Float32Array(new Uint32Array([0x7f800001, 0xff800001, 0x7fc00000]).buffer);
    const h = float32ToBfloat16(x);
    for (const b of h) expect(isNaN16(b, 0x7f80, 0x7f)).toBe(true);
    expect(h[1]! & 0x8000).toBe(0x8000);
    expect(float32ToBfloat16(Float32Array.of(3.4028234663852886e38))[0]).toBe(0x7f80); // rounds past max -> inf
  });
});

describe('int4 / uint4', () => {
  it('packs element 0 in the low nibble and element 1 in the high nibble', () => {
    expect(Array.from(packInt4([1, 2]))).toEqual([0x21]);
    expect(Array.from(packInt4([-1, 0]))).toEqual([0x0f]);
    expect(Array.from(packInt4([0, -8]))).toEqual([0x80]);
    expect(Array.from(packUint4([15, 3, 9]))).toEqual([0x3f, 0x09]); // odd tail: high nibble 0
    expect(Array.from(unpackInt4(Uint8Array.of(0x8f), 2))).toEqual([-1, -8]);
  });

  it('int4 and uint4 round-trip every value at odd and even lengths', () => {
    for (const n of [0, 1, 2, 15, 16, 17]) {
      const s = Int8Array.from({ length: n }, (_, i) => ((i * 7) % 16) - 8);
      const u = Uint8Array.from({ length: n }, (_, i) => (i * 5) % 16);
      expect(packInt4(s).length).toBe(Math.ceil(n / 2));
      expect(Array.from(unpackInt4(packInt4(s), n))).toEqual(Array.from(s));
      expect(Array.from(unpackUint4(packUint4(u), n))).toEqual(Array.from(u));
    }
    const all = Int8Array.from({ length: 16 }, (_, i) => i - 8);
    expect(Array.from(unpackInt4(packInt4(all), 16))).toEqual(Array.from(all));
  });

  it('rejects values out of range and short buffers', () => {
    expect(() => packInt4([8])).toThrow(/element 0 is 8/);
    expect(() => packInt4([-9])).toThrow(RangeError);
    expect(() => packUint4([16])).toThrow(RangeError);
    expect(() => packUint4([0.5])).toThrow(RangeError);
    expect(() => unpackInt4(new Uint8Array(1), 3)).toThrow(/need 2 bytes/);
  });
});

describe('typedView / toFloat32 / fromFloat32', () => {
  const bytes = Uint8Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff);

  it('views little-endian bytes as each type, sharing memory when aligned and copying when not', () => {
    const dv = new DataView(bytes.buffer);
    const cases: [number, number, (o: number) => number | bigint][] = [
      [DataType.FLOAT, 4, (o) => dv.getFloat32(o, true)],
      [DataType.DOUBLE, 8, (o) => dv.getFloat64(o, true)],
      [DataType.INT8, 1, (o) => dv.getInt8(o)],
      [DataType.UINT8, 1, (o) => dv.getUint8(o)],
      [DataType.INT16, 2, (o) => dv.getInt16(o, true)],
      [DataType.UINT16, 2, (o) => dv.getUint16(o, true)],
      [DataType.FLOAT16, 2, (o) => dv.getUint16(o, true)],
      [DataType.BFLOAT16, 2, (o) => dv.getUint16(o, true)],
      [DataType.INT32, 4, (o) => dv.getInt32(o, true)],
      [DataType.UINT32, 4, (o) => dv.getUint32(o, true)],
      [DataType.INT64, 8, (o) => dv.getBigInt64(o, true)],
      [DataType.UINT64, 8, (o) => dv.getBigUint64(o, true)],
    ];
    for (const [dt, size, get] of cases) {
      for (const start of [0, 1, 8]) {
        const sub = bytes.subarray(start, start + 4 * size);
        const v = typedView(dt, sub);
        expect(v.length).toBe(4);
        for (let i = 0; i < 4; i++) expect(Object.is(v[i], get(start + i * size)) || Number.isNaN(v[i] as number)).toBe(true);
        expect(v.buffer === bytes.buffer).toBe(start % size === 0);
      }
    }
    expect(() => typedView(DataType.INT4, bytes)).toThrow(/unpackInt4/);
    expect(() => typedView(DataType.FLOAT, bytes.subarray(0, 6))).toThrow(/whole number/);
  });

  it('toFloat32 decodes integer, bool, 4-bit and float types', () => {
    const i64 = new Uint8Array(BigInt64Array.of(-3n, 5n).buffer);
    expect(Array.from(toFloat32(DataType.INT64, i64))).toEqual([-3, 5]);
    expect(Array.from(toFloat32(DataType.INT8, Uint8Array.of(0xff, 2)))).toEqual([-1, 2]);
    expect(Array.from(toFloat32(DataType.UINT16, new Uint8Array(Uint16Array.of(65535).buffer)))).toEqual([65535]);
    expect(Array.from(toFloat32(DataType.BOOL, Uint8Array.of(0, 1)))).toEqual([0, 1]);
    expect(Array.from(toFloat32(DataType.INT4, packInt4([-8, 7, 3]), 3))).toEqual([-8, 7, 3]);
    expect(Array.from(toFloat32(DataType.UINT4, packUint4([15, 0])))).toEqual([15, 0]);
    expect(Array.from(toFloat32(DataType.FLOAT16, new Uint8Array(Uint16Array.of(0x3c00, 0xc000).buffer)))).toEqual([1, -2]);
    expect(Array.from(toFloat32(DataType.BFLOAT16, new Uint8Array(Uint16Array.of(0x3f80).buffer)))).toEqual([1]);
    expect(Array.from(toFloat32(DataType.DOUBLE, new Uint8Array(Float64Array.of(0.1).buffer)))).toEqual([Math.fround(0.1)]);
    expect(() => toFloat32(DataType.STRING, bytes)).toThrow();
  });

  it('fromFloat32 then toFloat32 round-trips values already on each grid', () => {
    const x = Float32Array.of(0, -0, 1, -2.5, 0.375, 65504, 2 ** -24, Infinity);
    for (const dt of [DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE]) {
      const raw = fromFloat32(dt, x);
      expect(raw.byteLength).toBe(x.length * { 1: 4, 10: 2, 16: 2, 11: 8 }[dt]!);
      const back = toFloat32(dt, raw);
      const want = dt === DataType.BFLOAT16 ? Float32Array.of(0, -0, 1, -2.5, 0.375, 65536, 2 ** -24, Infinity) : x;
      expect(Array.from(back)).toEqual(Array.from(want));
    }
    expect(() => fromFloat32(DataType.INT8, x)).toThrow(/cannot encode int8/);
  });
});
