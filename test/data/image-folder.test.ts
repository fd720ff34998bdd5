import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { datasetSpecFromCli } from '../../src/data/cli-spec.js';
import { loadDataset } from '../../src/data/load.js';
import type { DatasetSpec } from '../../src/data/spec.js';
import type { TensorDataset } from '../../src/data/types.js';
import { UserError } from '../../src/errors.js';
import { runCli } from '../cli/run-cli.js';
import { FIXTURES, tempDir } from '../helpers.js';

const tmp = tempDir('pare-imgdir-');
afterAll(() => tmp.cleanup());

const load = async (spec: Record<string, unknown>) => (await loadDataset({ kind: 'image-folder', ...spec } as DatasetSpec, tmp.dir)) as TensorDataset;
async function rejects(spec: Record<string, unknown>, re: RegExp): Promise<void> {
  const p = load(spec);
  await expect(p).rejects.toThrow(UserError);
  await expect(load(spec)).rejects.toThrow(re);
}

/** Writes an [h, w, c] uint8 image in the format its extension names (PNG and WebP lossless, JPEG at quality 100). */
async function writeImage(path: string, px: Uint8Array, h: number, w: number, c: 1 | 3): Promise<void> {
  const img = sharp(Buffer.from(px), { raw: { width: w, height: h, channels: c } });
  const ext = path.slice(path.lastIndexOf('.') + 1);
  const out = ext === 'png' ? img.png() : ext === 'webp' ? img.webp({ lossless: true }) : img.jpeg({ quality: 100 });
  mkdirSync(join(path, '..'), { recursive: true });
  await out.toFile(path);
}

/** An [h, w, 3] image whose pixel (y, x, k) is 10·y + 3·x + 50·k. */
const ramp = (h: number, w: number) => Uint8Array.from({ length: h * w * 3 }, (_, i) => 10 * Math.floor(i / (3 * w)) + 3 * (Math.floor(i / 3) % w) + 50 * (i % 3));

describe('image-folder datasets', () => {
  it('PNG and WebP decode exactly; labels from sub-folders, class names sorted and kept, classes interleaved', async () => {
    const dir = join(tmp.dir, 'pets');
    await writeImage(join(dir, 'dog', 'a.png'), ramp(4, 5), 4, 5, 3);
    await writeImage(join(dir, 'dog', 'b.webp'), ramp(4, 5).map((v) => 255 - v), 4, 5, 3);
    await writeImage(join(dir, 'cat', 'c.png'), ramp(4, 5), 4, 5, 3);
    const ds = await load({ path: dir, layout: 'nhwc' });
    expect(ds.classes).toEqual(['cat', 'dog']);
    expect(Array.from(ds.labels!)).toEqual([0, 1, 1]); // cat/c, dog/a, dog/b
    expect(ds.sampleShape).toEqual([4, 5, 3]);
    expect(Array.from(ds.data.subarray(0, 60))).toEqual(Array.from(ramp(4, 5)));
    expect(Array.from(ds.data.subarray(120, 180))).toEqual(Array.from(ramp(4, 5), (v) => 255 - v));
    expect(ds.files).toHaveLength(1);
    expect(ds.files[0]!.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(ds.description).toBe('image-folder pets, 3 images 4×5×3, labels from 2 sub-folders; rgb, nhwc');
    const limited = await load({ path: dir, limit: 2 });
    expect(Array.from(limited.labels!)).toEqual([0, 1]);
  });

  it('nchw (default), bgr and gray reorder and convert channels; scale/mean/std per channel', async () => {
    const dir = join(tmp.dir, 'one');
    const px = ramp(2, 3);
    await writeImage(join(dir, 'x.png'), px, 2, 3, 3);
    const at = (y: number, x: number, k: number) => px[(y * 3 + x) * 3 + k]!;
    const nchw = await load({ path: dir, scale: 0.5, mean: [1, 2, 3], std: [1, 2, 4] });
    expect(nchw.sampleShape).toEqual([3, 2, 3]);
    expect(nchw.data[1 * 6 + 1 * 3 + 2]).toBeCloseTo((at(1, 2, 1) * 0.5 - 2) / 2, 6);
    const bgr = await load({ path: dir, color: 'bgr', layout: 'nhwc' });
    expect(Array.from(bgr.data.subarray(0, 3))).toEqual([at(0, 0, 2), at(0, 0, 1), at(0, 0, 0)]);
    const gray = await load({ path: dir, color: 'gray' });
    expect(gray.sampleShape).toEqual([1, 2, 3]);
    // PIL's convert('L'): Rec. 601 luma of the sRGB values, rounded
    const luma = (y: number, x: number) => Math.round(0.299 * at(y, x, 0) + 0.587 * at(y, x, 1) + 0.114 * at(y, x, 2));
    expect(Array.from(gray.data)).toEqual([0, 1].flatMap((y) => [0, 1, 2].map((x) => luma(y, x))));
  });

  it('resize keeps the aspect ratio by the shorter side, then a centre crop; the imagenet preset fills every step and the description lists them', async () => {
    const dir = join(tmp.dir, 'wide');
    // a 300×400 image: Resize(256) gives 256×341, CenterCrop(224) starts at (16, 58)
    await writeImage(join(dir, 'w.jpg'), new Uint8Array(300 * 400 * 3).fill(128), 300, 400, 3);
    const ds = await load({ path: dir, preset: 'imagenet' });
    expect(ds.sampleShape).toEqual([3, 224, 224]);
    // a flat grey stays flat through resize and JPEG; each channel is normalised by its own mean/std
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    for (let k = 0; k < 3; k++) expect(Math.abs(ds.data[k * 224 * 224 + 1000]! - (128 / 255 - mean[k]!) / std[k]!)).toBeLessThan(2 / 255 / std[k]!);
    expect(ds.description).toBe('image-folder wide, 1 images 3×224×224, no labels; preset imagenet: rgb, bilinear resize shorter side to 256, centre crop 224×224, nchw, scale 0.00392157, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]');
    const crop = await load({ path: dir, crop: [100, 50], layout: 'nhwc' });
    expect(crop.sampleShape).toEqual([100, 50, 3]);
  });

  it('centre crop takes the middle pixels (top = round((h − ch)/2)) exactly on PNG', async () => {
    const dir = join(tmp.dir, 'crop');
    await writeImage(join(dir, 'r.png'), ramp(6, 7), 6, 7, 3);
    const ds = await load({ path: dir, crop: [2, 3], layout: 'nhwc' });
    // top = 2, left = 2
    const want = [2, 3].flatMap((y) => [2, 3, 4].flatMap((x) => [0, 1, 2].map((k) => 10 * y + 3 * x + 50 * k)));
    expect(Array.from(ds.data)).toEqual(want);
  });

  it('labels from a CSV (names or integers) and from a number in the file name', async () => {
    const dir = join(tmp.dir, 'flat');
    for (const n of ['img_7.png', 'img_12.png', 'img_300.png']) await writeImage(join(dir, n), ramp(2, 2), 2, 2, 3);
    writeFileSync(join(tmp.dir, 'names.csv'), 'file,label\nimg_7.png,zebra\nimg_12.png,ant\nimg_300.png,zebra\n');
    writeFileSync(join(tmp.dir, 'ints.csv'), 'img_7.png,999\nimg_12.png,3\nimg_300.png,256\n');
    const names = await load({ path: dir, labels: 'names.csv' });
    expect(names.classes).toEqual(['ant', 'zebra']);
    expect(Array.from(names.labels!)).toEqual([1, 0, 1]); // files in numeric name order: 7, 12, 300
    expect(Array.from((await load({ path: dir, labels: 'ints.csv' })).labels!)).toEqual([999, 3, 256]);
    expect(Array.from((await load({ path: dir, label_from: 'filename' })).labels!)).toEqual([7, 12, 300]);
    expect(Array.from((await load({ path: dir, label_from: 'filename', label_pattern: '^img_(\\d)' })).labels!)).toEqual([7, 1, 3]);
  });

  it('wrong combinations are one-line user errors naming the field and the fix', async () => {
    const dir = join(tmp.dir, 'flat');
    await rejects({ path: dir, preset: 'imagenet', color: 'gray' }, /mean has 3 values \(from preset imagenet\) for 1-channel gray images \(field mean\)/);
    await rejects({ path: dir, crop: 5 }, /img_7\.png: crop 5×5 is larger than the 2×2 image \(field crop\)/);
    await rejects({ path: dir, label_from: 'folders' }, /flat: img_7\.png is not in a class sub-folder; move it into one, or set label_from/);
    await rejects({ path: dir, label_from: 'filename', label_pattern: 'zz(\\d)' }, /file name img_7\.png has no class number matching label_pattern/);
    writeFileSync(join(tmp.dir, 'short.csv'), 'img_7.png,1\n');
    await rejects({ path: dir, labels: 'short.csv' }, /short\.csv: 2 images of .* have no row, e.g. img_12\.png/);
    const mixed = join(tmp.dir, 'mixed');
    await writeImage(join(mixed, 'a.png'), ramp(2, 2), 2, 2, 3);
    await writeImage(join(mixed, 'b.png'), ramp(3, 2), 3, 2, 3);
    await rejects({ path: mixed }, /b\.png: 3×2 after the transforms, a\.png was 2×2; set resize and crop/);
    mkdirSync(join(tmp.dir, 'empty'));
    await rejects({ path: join(tmp.dir, 'empty') }, /empty: no \.jpg\/\.jpeg\/\.png\/\.webp images in the folder/);
    writeFileSync(join(mixed, 'bad.png'), 'not a png');
    await rejects({ path: mixed, resize: 2, crop: 2 }, /bad\.png: not a decodable JPEG\/PNG\/WebP image/);
  });

  it('a folder on the command line is an image folder, with presets and transforms as flags', () => {
    const dir = join(tmp.dir, 'pets');
    const { spec } = datasetSpecFromCli(dir, { preset: 'imagenet', crop: [200], mean: [0.5], labelFrom: 'folders' }, tmp.dir);
    expect(spec).toMatchObject({ kind: 'image-folder', path: dir, preset: 'imagenet', crop: 200, mean: [0.5], label_from: 'folders' });
    expect(() => datasetSpecFromCli(FIXTURES.mnistImages, { resize: 32 }, tmp.dir)).toThrow(/--resize apply only to a folder of images/);
    expect(() => datasetSpecFromCli(dir, { preset: 'vgg' }, tmp.dir)).toThrow(/preset: /);
  });
});

describe('mnist-8 through an image folder', () => {
  const digits = join(tmp.dir, 'digits');
  beforeAll(async () => {
    const pixels = gunzipSync(readFileSync(FIXTURES.mnistImages)).subarray(16);
    const labels = gunzipSync(readFileSync(FIXTURES.mnistLabels)).subarray(8);
    for (let c = 0; c < 10; c++) mkdirSync(join(digits, String(c)), { recursive: true });
    await Promise.all(Array.from(labels, (l, i) => writeImage(join(digits, String(l), `${i}.png`), pixels.subarray(i * 784, (i + 1) * 784), 28, 28, 1)));
  });

  it('`pare eval --data <folder> --color gray` gives the IDX path\'s 98.70 % on the 1,000 carried digits (28×28, raw 0..255)', async () => {
    const r = await runCli(['eval', FIXTURES.mnist, '--data', digits, '--color', 'gray', '--no-latency', '--json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out);
    expect(report.measurements.model.quality.samples).toBe(1000);
    expect((report.measurements.model.quality.top1 * 100).toFixed(2)).toBe('98.70');
    expect(report.data.description).toBe('image-folder digits, 1000 images 1×28×28, labels from 10 sub-folders (numbered: the number is the class); gray, nchw');
  });

  it('rgb images on the 1-channel model are refused in one line that names --color gray', async () => {
    const r = await runCli(['eval', FIXTURES.mnist, '--data', digits, '--limit', '10', '--no-latency']);
    expect(r.code).toBe(2);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).toMatch(/3 channels.*1 channel.*color gray/);
  });
});

describe('datasetFiles of folders', () => {
  it('lists each image (and the CSV), so a sweep hashes what it reads', async () => {
    const { datasetFiles } = await import('../../src/data/load.js');
    const dir = join(tmp.dir, 'listed');
    await writeImage(join(dir, 'a', '2.png'), ramp(2, 2), 2, 2, 3);
    await writeImage(join(dir, 'a', '10.jpg'), ramp(2, 2), 2, 2, 3);
    writeFileSync(join(dir, 'README.txt'), 'not an image');
    expect(datasetFiles({ kind: 'image-folder', path: 'listed', labels: 'l.csv' }, tmp.dir)).toEqual([join(dir, 'a', '2.png'), join(dir, 'a', '10.jpg'), join(tmp.dir, 'l.csv')]);
  });
});
