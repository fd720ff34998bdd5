import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/load.js';
import type { DatasetSpec } from '../../src/data/spec.js';
import type { TensorDataset } from '../../src/data/types.js';
import { UserError } from '../../src/errors.js';
import { tempDir } from '../helpers.js';
import { idx, npy } from './build.js';

const tmp = tempDir('pare-img-');
afterAll(() => tmp.cleanup());
const file = (name: string, bytes: string | Uint8Array) => {
  const p = join(tmp.dir, name);
  writeFileSync(p, bytes);
  return p;
};
const load = async (spec: Record<string, unknown>) => (await loadDataset({ scale: 1, ...spec } as DatasetSpec, tmp.dir)) as TensorDataset;
async function rejects(spec: Record<string, unknown>, re: RegExp): Promise<void> {
  await expect(load(spec)).rejects.toThrow(UserError);
  await expect(load(spec)).rejects.toThrow(re);
}

describe('IDX images', () => {
  const pixels = Uint8Array.from({ length: 3 * 2 * 2 }, (_, i) => i * 10);

  it('gzipped or not (by magic bytes, not name): NCHW [1, H, W] samples, normalised, with labels', async () => {
    for (const gz of [false, true]) {
      const bytes = idx([3, 2, 2], pixels);
      const images = file(`img${gz}-idx3-ubyte`, gz ? gzipSync(bytes) : bytes);
      const labels = file(`lab${gz}-idx1-ubyte.gz`, gz ? gzipSync(idx([3], Uint8Array.of(7, 1, 0))) : idx([3], Uint8Array.of(7, 1, 0)));
      const ds = await load({ kind: 'idx', images, labels, scale: 0.1, mean: [1], std: [2] });
      expect(ds.count).toBe(3);
      expect(ds.sampleShape).toEqual([1, 2, 2]);
      expect(ds.layout).toBe('nchw');
      expect(Array.from(ds.labels!)).toEqual([7, 1, 0]);
      expect(ds.data[5]).toBeCloseTo((50 * 0.1 - 1) / 2, 6);
      expect(ds.files.map((f) => f.path)).toEqual([images, labels]);
      expect(ds.description).toBe(`idx img${gz}-idx3-ubyte, 3 images 2×2 with labels lab${gz}-idx1-ubyte.gz, scale 0.1, mean [1], std [2]`);
    }
  });

  it('limit keeps the first samples', async () => {
    const images = file('lim-idx3-ubyte', idx([3, 2, 2], pixels));
    const labels = file('lim-idx1-ubyte', idx([3], Uint8Array.of(7, 1, 0)));
    const ds = await load({ kind: 'idx', images, labels, limit: 2 });
    expect(ds.count).toBe(2);
    expect(ds.data).toHaveLength(8);
    expect(Array.from(ds.labels!)).toEqual([7, 1]);
  });

  it('bad magic, type, rank, length and label count are user errors naming the file', async () => {
    const good = file('g-idx3-ubyte', idx([3, 2, 2], pixels));
    const wrongType = idx([3, 2, 2], pixels);
    wrongType[2] = 0x0d;
    await rejects({ kind: 'idx', images: file('magic-idx3-ubyte', 'hello world') }, /magic-idx3-ubyte: not an IDX file \(bad magic number\)/);
    await rejects({ kind: 'idx', images: file('type-idx3-ubyte', wrongType) }, /type-idx3-ubyte: IDX data type 0xd/);
    await rejects({ kind: 'idx', images: file('rank-idx3-ubyte', idx([12], pixels)) }, /rank-idx3-ubyte: images: expected an idx3 file \[N, H, W\], found rank 1/);
    await rejects({ kind: 'idx', images: file('short-idx3-ubyte', idx([3, 2, 2], pixels).subarray(0, 20)) }, /short-idx3-ubyte: IDX header promises 12 bytes of data \[3×2×2\], the file holds 4/);
    await rejects({ kind: 'idx', images: file('gz-idx3-ubyte.gz', gzipSync(idx([3, 2, 2], pixels)).subarray(0, 15)) }, /gz-idx3-ubyte\.gz: corrupt gzip data/);
    await rejects({ kind: 'idx', images: good, labels: file('two-idx1-ubyte', idx([2], Uint8Array.of(1, 2))) }, /two-idx1-ubyte: labels: 2 labels for 3 images in .*g-idx3-ubyte/);
    await rejects({ kind: 'idx', images: good, labels: file('l2-idx1-ubyte', idx([3, 1], Uint8Array.of(1, 2, 3))) }, /l2-idx1-ubyte: labels: expected an idx1 file \[N\], found rank 2/);
  });
});

describe('raw uint8 images', () => {
  const nhwc = file('raw.bin', Uint8Array.of(10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120));

  it('NHWC: per-channel mean/std along the last axis', async () => {
    const ds = await load({ kind: 'images', path: nhwc, shape: [1, 2, 3], layout: 'nhwc', mean: [0, 10, 20], std: [1, 2, 4] });
    expect(ds.count).toBe(2);
    expect(Array.from(ds.data)).toEqual([10, 5, 2.5, 40, 20, 10, 70, 35, 17.5, 100, 50, 25]);
    expect(ds.description).toBe('images raw.bin, 2 × [1×2×3] nhwc, mean [0, 10, 20], std [1, 2, 4]');
  });

  it('NCHW: per-channel mean/std along the first axis, scale first', async () => {
    const ds = await load({ kind: 'images', path: nhwc, shape: [3, 1, 2], layout: 'nchw', scale: 0.5, mean: [0, 10, 20], std: [1, 2, 4] });
    expect(Array.from(ds.data.subarray(0, 6))).toEqual([5, 10, (15 - 10) / 2, (20 - 10) / 2, (25 - 20) / 4, (30 - 20) / 4]);
  });

  it('uint8 labels, one per image', async () => {
    const ds = await load({ kind: 'images', path: nhwc, shape: [1, 2, 3], layout: 'nhwc', labels: file('y.bin', Uint8Array.of(9, 4)) });
    expect(Array.from(ds.labels!)).toEqual([9, 4]);
  });

  it('labels past 255 survive as uint16 or int32 (1000 classes do not wrap mod 256)', async () => {
    const spec = { kind: 'images', path: nhwc, shape: [1, 2, 3], layout: 'nhwc' };
    const u16 = await load({ ...spec, labels: file('y16.bin', new Uint8Array(Uint16Array.of(999, 256).buffer)), labels_dtype: 'uint16' });
    expect(Array.from(u16.labels!)).toEqual([999, 256]);
    const i32 = await load({ ...spec, labels: file('y32.bin', new Uint8Array(Int32Array.of(70000, 511).buffer)), labels_dtype: 'int32' });
    expect(Array.from(i32.labels!)).toEqual([70000, 511]);
    expect(i32.labels).toBeInstanceOf(Int32Array);
  });

  it('a .npy labels file is read as .npy (by its magic bytes), not as raw bytes with the header taken for labels', async () => {
    const spec = { kind: 'images', path: nhwc, shape: [1, 2, 3], layout: 'nhwc' };
    const ds = await load({ ...spec, labels: file('y.npy', npy('<i8', [2], BigInt64Array.of(999n, 3n))) });
    expect(Array.from(ds.labels!)).toEqual([999, 3]);
    const renamed = await load({ ...spec, labels: file('y-npy.bin', npy('<u2', [2], Uint16Array.of(5, 700))) });
    expect(Array.from(renamed.labels!)).toEqual([5, 700]);
    await rejects({ ...spec, labels: file('yf.npy', npy('<f4', [2], Float32Array.of(1, 2))) }, /yf\.npy: labels: expected a 1-D integer array, found float shape \(2\)/);
  });

  it('a labels file of another width per image names the labels_dtype that fits', async () => {
    const spec = { kind: 'images', path: nhwc, shape: [1, 2, 3], layout: 'nhwc' };
    await rejects({ ...spec, labels: file('w16.bin', new Uint8Array(Uint16Array.of(1, 2).buffer)) }, /w16\.bin: labels: 4 uint8 labels for 2 images in .*raw\.bin; the file holds 2 bytes per image: set labels_dtype: uint16/);
    await rejects({ ...spec, labels: file('w32.bin', new Uint8Array(Int32Array.of(1, 2).buffer)), labels_dtype: 'uint16' }, /w32\.bin: labels: 4 uint16 labels for 2 images .*set labels_dtype: int32/);
    await rejects({ ...spec, labels: file('neg.bin', new Uint8Array(Int32Array.of(1, -2).buffer)), labels_dtype: 'int32' }, /neg\.bin: labels: label -2 of sample 1 is not a class index/);
  });

  it('wrong sizes, label counts and normalisation lengths are user errors naming the file and field', async () => {
    const spec = { kind: 'images', path: nhwc, shape: [1, 2, 3], layout: 'nhwc' };
    await rejects({ ...spec, shape: [2, 2, 2] }, /raw\.bin: shape: 12 bytes is not a whole number of \[2×2×2\] uint8 images/);
    await rejects({ ...spec, path: file('empty.bin', new Uint8Array(0)) }, /empty\.bin: shape: 0 bytes/);
    await rejects({ ...spec, labels: file('test_y.bin', Uint8Array.of(1, 2, 3)) }, /test_y\.bin: labels: 3 uint8 labels for 2 images/);
    await rejects({ ...spec, mean: [1, 2] }, /raw\.bin: mean has 2 values for 3 channels \(nhwc\) \(field mean\)/);
    await rejects({ ...spec, std: [1, 0, 1] }, /raw\.bin: std\[1\] is 0 \(field std\)/);
    await rejects({ ...spec, labels: join(tmp.dir, 'nolabels.bin') }, /nolabels\.bin: no such labels/);
  });
});
