import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/load.js';
import { readNpy } from '../../src/data/npy.js';
import type { DatasetSpec } from '../../src/data/spec.js';
import type { TensorDataset } from '../../src/data/types.js';
import { UserError } from '../../src/errors.js';
import { tempDir } from '../helpers.js';
import { npy } from './build.js';

const tmp = tempDir('pare-npy-');
afterAll(() => tmp.cleanup());
const file = (name: string, bytes: string | Uint8Array) => {
  const p = join(tmp.dir, name);
  writeFileSync(p, bytes);
  return p;
};
const load = async (spec: Record<string, unknown>) => (await loadDataset({ kind: 'npy', scale: 1, ...spec } as DatasetSpec, tmp.dir)) as TensorDataset;

describe('.npy arrays', () => {
  it('reads every supported dtype, little-endian, in format versions 1, 2 and 3', () => {
    const values = [0, 1, 2, 3, 100, 7];
    const arrays: [string, ArrayBufferView, number[]?][] = [
      ['<f4', Float32Array.from([0.5, -1.25, 2, 3, 100, 7]), [0.5, -1.25, 2, 3, 100, 7]],
      ['<f8', Float64Array.from([0.1, -1e300, 2, 3, 100, 7]), [0.1, -1e300, 2, 3, 100, 7]],
      ['|u1', Uint8Array.from([0, 255, 2, 3, 100, 7]), [0, 255, 2, 3, 100, 7]],
      ['|i1', Int8Array.from([0, -128, 2, 3, 100, 7]), [0, -128, 2, 3, 100, 7]],
      ['<i2', Int16Array.from([0, -300, 2, 3, 100, 7]), [0, -300, 2, 3, 100, 7]],
      ['<u2', Uint16Array.from([0, 65535, 2, 3, 100, 7]), [0, 65535, 2, 3, 100, 7]],
      ['<i4', Int32Array.from([0, -70000, 2, 3, 100, 7]), [0, -70000, 2, 3, 100, 7]],
      ['<u4', Uint32Array.from([0, 4e9, 2, 3, 100, 7]), [0, 4e9, 2, 3, 100, 7]],
      ['<i8', BigInt64Array.from([0n, -5n, 2n, 3n, 100n, 7n]), [0, -5, 2, 3, 100, 7]],
      ['<u8', BigUint64Array.from(values.map(BigInt)), values],
      ['|b1', Uint8Array.from([0, 1, 0, 1, 1, 0]), [0, 1, 0, 1, 1, 0]],
    ];
    for (const version of [1, 2, 3] as const) {
      for (const [descr, data, expected] of arrays) {
        const p = file(`a-${descr.slice(1)}-v${version}.npy`, npy(descr, [2, 3], data, { version }));
        const a = readNpy(p);
        expect(a.shape, descr).toEqual([2, 3]);
        expect(Array.from(a.values), descr).toEqual(expected);
        expect(a.integer, descr).toBe(!descr.includes('f'));
      }
    }
  });

  it('samples along the first axis, with int64 labels, limit and layout-aware normalisation', async () => {
    const values = Float32Array.from({ length: 4 * 3 }, (_, i) => i / 2);
    const path = file('x.npy', npy('<f4', [4, 3], values));
    const labels = file('y.npy', npy('<i8', [4], BigInt64Array.from([0n, 1n, 2n, 1n])));
    const ds = await load({ path, labels });
    expect(ds.count).toBe(4);
    expect(ds.sampleShape).toEqual([3]);
    expect(Array.from(ds.data)).toEqual(Array.from(values));
    expect(Array.from(ds.labels!)).toEqual([0, 1, 2, 1]);
    expect(ds.description).toBe('npy x.npy, 4 × (3) with labels');
    const limited = await load({ path, labels, limit: 3 });
    expect(limited.count).toBe(3);
    expect(Array.from(limited.labels!)).toEqual([0, 1, 2]);
    // NCHW samples [2, 1, 2]: channel 0 is the first two values of each sample
    const img = file('img.npy', npy('|u1', [2, 2, 1, 2], Uint8Array.from([10, 20, 30, 40, 50, 60, 70, 80])));
    const ds2 = await load({ path: img, layout: 'nchw', scale: 0.1, mean: [1, 3], std: [1, 2] });
    expect(Array.from(ds2.data).map((v) => +v.toFixed(5))).toEqual([0, 1, 0, 0.5, 4, 5, 2, 2.5]);
  });

  it('Fortran order, big-endian, unknown dtypes and bad headers are user errors naming the file', async () => {
    const f4 = Float32Array.from([1, 2, 3, 4]);
    const cases: [string, Uint8Array, RegExp][] = [
      ['fortran.npy', npy('<f4', [2, 2], f4, { fortran: true }), /fortran\.npy: Fortran-order arrays are not supported/],
      ['big.npy', npy('>f4', [2, 2], f4), /big\.npy: dtype '>f4': big-endian data is not supported/],
      ['c8.npy', npy('<c8', [2, 1], f4), /c8\.npy: dtype '<c8': supported: little-endian/],
      ['magic.npy', Buffer.from('PK\x03\x04 not numpy at all'), /magic\.npy: not a \.npy file \(bad magic\)/],
      ['short.npy', npy('<f4', [2, 3], f4), /short\.npy: header shape \(2, 3\) of <f4 needs 24 bytes of data, the file holds 16/],
      ['v9.npy', Uint8Array.from([...npy('<f4', [2, 2], f4)].map((b, i) => (i === 6 ? 9 : b))), /v9\.npy: \.npy format version 9\.0 is not supported/],
      ['vec.npy', npy('<f4', [4], f4), /vec\.npy: expected samples along the first axis and at least one feature axis, found shape \(4\)/],
    ];
    for (const [name, bytes, re] of cases) {
      const p = file(name, bytes);
      await expect(load({ path: p }), name).rejects.toThrow(UserError);
      await expect(load({ path: p }), name).rejects.toThrow(re);
    }
  });

  it('labels that are float, the wrong count or negative are user errors naming the labels file', async () => {
    const path = file('s.npy', npy('<f4', [3, 2], new Float32Array(6)));
    const cases: [string, Uint8Array, RegExp][] = [
      ['lf.npy', npy('<f4', [3], new Float32Array(3)), /lf\.npy: labels: expected a 1-D integer array, found float shape \(3\)/],
      ['l2.npy', npy('<i4', [2], Int32Array.from([0, 1])), /l2\.npy: labels: 2 labels for 3 samples in .*s\.npy/],
      ['ln.npy', npy('<i4', [3], Int32Array.from([0, -1, 1])), /ln\.npy: labels: label -1 of sample 1 is not a class index/],
    ];
    for (const [name, bytes, re] of cases) {
      const labels = file(name, bytes);
      await expect(load({ path, labels }), name).rejects.toThrow(re);
    }
    await expect(load({ path, layout: 'nhwc' })).rejects.toThrow(/s\.npy: layout nhwc needs samples with 3 axes, found \(2\) \(field layout\)/);
  });
});
