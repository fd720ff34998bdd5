import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import { UserError } from '../errors.js';
import { formatBytes, fsReadError, INPUT_LIMITS, readInputFile } from '../util/read-file.js';
import { fileRef, normalise } from './images.js';
import { labelledImages } from './image-labels.js';
import { imageTransforms, transformsText, type ImageTransforms } from './image-transforms.js';
import type { ImageFolderSpec } from './spec.js';
import type { TensorDataset } from './types.js';

const KERNEL = { bilinear: 'linear', bicubic: 'cubic', nearest: 'nearest', lanczos3: 'lanczos3' } as const;
/** images decoded at once; sharp runs each on libuv's thread pool */
const IN_FLIGHT = 8;

/** Decoded pixels of one image after resize and crop: [h, w, 3] uint8 RGB. */
interface Pixels {
  data: Uint8Array;
  height: number;
  width: number;
  channels: number;
}

/**
 * One image through torchvision's order of steps: decode, resize the shorter side to `resize`
 * (the longer one to ⌊resize·long/short⌋), centre crop (top = round((h − ch)/2)), then convert to
 * 8-bit sRGB; alpha is dropped. EXIF orientation is not applied (PIL does not either).
 */
async function decode(bytes: Buffer, t: ImageTransforms, where: string): Promise<Pixels> {
  try {
    let img = sharp(bytes, { failOn: 'error' });
    const meta = await img.metadata();
    let w = meta.width;
    let h = meta.height;
    if (!w || !h) throw new UserError(`${where}: not a decodable image (no size)`);
    if (t.resize) {
      const [nw, nh] = w <= h ? [t.resize, Math.floor((t.resize * h) / w)] : [Math.floor((t.resize * w) / h), t.resize];
      img = img.resize(nw, nh, { kernel: KERNEL[t.interpolation], fit: 'fill' });
      [w, h] = [nw, nh];
    }
    if (t.crop) {
      const [ch, cw] = t.crop;
      if (ch > h || cw > w) throw new UserError(`${where}: crop ${ch}×${cw} is larger than the ${h}×${w} image${t.resize ? ` after resize ${t.resize}` : ''} (field crop); set resize to at least ${Math.max(ch, cw)}`);
      img = img.extract({ left: Math.round((w - cw) / 2), top: Math.round((h - ch) / 2), width: cw, height: ch });
    }
    const { data, info } = await img.toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || data.length !== info.width * info.height * 3) throw new UserError(`${where}: decoded to ${info.channels} channels of ${data.length / (info.width * info.height * info.channels)} bytes, expected 8-bit RGB`);
    return { data, height: info.height, width: info.width, channels: info.channels };
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${where}: not a decodable JPEG/PNG/WebP image (${(e as Error).message})`);
  }
}

/**
 * [h, w, 3] RGB pixels into the dataset's layout and channel order; gray is PIL's convert('L')
 * (and torchvision's Grayscale): L = R·299/1000 + G·587/1000 + B·114/1000 in 16-bit fixed point,
 * so a gray image read as RGB comes back unchanged.
 */
function place(p: Pixels, t: ImageTransforms, dst: Uint8Array): void {
  const { height: h, width: w, channels: c } = p;
  const hw = h * w;
  if (t.color === 'gray') {
    for (let i = 0; i < hw; i++) dst[i] = (p.data[3 * i]! * 19595 + p.data[3 * i + 1]! * 38470 + p.data[3 * i + 2]! * 7471 + 0x8000) >> 16;
    return;
  }
  for (let i = 0; i < hw; i++) {
    for (let k = 0; k < c; k++) {
      const from = t.color === 'bgr' ? c - 1 - k : k;
      dst[t.layout === 'nchw' ? k * hw + i : i * c + k] = p.data[i * c + from]!;
    }
  }
}

/** `files` (relative to `dir`) decoded through `t` into one uint8 array in the dataset's layout, all of one size; sha256 pins names and bytes. */
async function decodeAll(dir: string, files: string[], t: ImageTransforms, field: string): Promise<{ pixels: Uint8Array; shape: number[]; sha256: string }> {
  const count = files.length;
  let pixels: Uint8Array | undefined;
  let shape: number[] = [];
  let first = '';
  const hash = createHash('sha256');
  for (let start = 0; start < count; start += IN_FLIGHT) {
    const batch = files.slice(start, start + IN_FLIGHT);
    const bytes = batch.map((f) => readInputFile(join(dir, f), 'image', { maxBytes: INPUT_LIMITS.samples, field }));
    // the first failure in file order, whichever finished first
    const settled = await Promise.allSettled(bytes.map((b, i) => decode(b, t, join(dir, batch[i]!))));
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    const decoded = settled.map((r) => (r as PromiseFulfilledResult<Pixels>).value);
    for (const [i, p] of decoded.entries()) {
      const f = batch[i]!;
      hash.update(`${f}\0${createHash('sha256').update(bytes[i]!).digest('hex')}\n`);
      const channels = t.color === 'gray' ? 1 : 3;
      const here = t.layout === 'nchw' ? [channels, p.height, p.width] : [p.height, p.width, channels];
      if (!pixels) {
        const per = here.reduce((a, b) => a * b, 1);
        if (count * per * 4 > INPUT_LIMITS.samples) throw new UserError(`${dir}: ${count} images of ${here.join('×')} are more than pare reads (${formatBytes(INPUT_LIMITS.samples)} as float32); set limit (or a smaller one)`);
        pixels = new Uint8Array(count * per);
        shape = here;
        first = f;
      } else if (here.join() !== shape.join()) {
        throw new UserError(`${join(dir, f)}: ${p.height}×${p.width} after the transforms, ${first} was ${t.layout === 'nchw' ? `${shape[1]}×${shape[2]}` : `${shape[0]}×${shape[1]}`}; set resize and crop (--resize, --crop) so every image has one size`);
      }
      const per = pixels.length / count;
      place(p, t, pixels.subarray((start + i) * per, (start + i + 1) * per));
    }
  }
  return { pixels: pixels!, shape, sha256: hash.digest('hex') };
}

/** A folder of JPEG/PNG/WebP images, labelled by sub-folder, CSV or file name, preprocessed as the spec says. */
export async function loadImageFolder(spec: ImageFolderSpec, dir: string, csvPath?: string, targetsDir?: string): Promise<TensorDataset> {
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    throw fsReadError(dir, 'image folder', e, 'path');
  }
  if (!st.isDirectory()) throw new UserError(`${dir}: is a file, expected a folder of images (field path)`);
  const t = imageTransforms(spec, dir);
  const listed = labelledImages(spec, dir, csvPath);
  const total = listed.files.length;
  const count = Math.min(total, spec.limit ?? total);
  const files = listed.files.slice(0, count);
  const { pixels, shape, sha256 } = await decodeAll(dir, files, t, 'path');
  let targets: TensorDataset['targets'];
  let targetsHash: string | undefined;
  if (targetsDir) {
    // the same file names in the targets folder: colour, layout and scale, never resized, cropped or centred
    const tt: ImageTransforms = { ...t, resize: undefined, crop: undefined, mean: undefined, std: undefined };
    const decoded = await decodeAll(targetsDir, files, tt, 'targets');
    targets = { data: normalise(decoded.pixels, count, decoded.shape, t.layout, { scale: t.scale }, targetsDir), sampleShape: decoded.shape };
    targetsHash = decoded.sha256;
  }
  return {
    kind: 'tensors',
    sampleShape: shape,
    layout: t.layout,
    data: normalise(pixels, count, shape, t.layout, t, dir),
    count,
    ...(listed.labels ? { labels: listed.labels.subarray(0, count) } : {}),
    ...(listed.classes ? { classes: listed.classes } : {}),
    ...(targets ? { targets } : {}),
    files: [{ path: dir, sha256 }, ...(csvPath ? [fileRef(csvPath)] : []), ...(targetsDir ? [{ path: targetsDir, sha256: targetsHash! }] : [])],
    description: `image-folder ${basename(dir)}, ${count}${count < total ? ` of ${total}` : ''} images ${shape.join('×')}, ${listed.source}; ${transformsText(t)}${targets ? `; targets ${basename(targetsDir!)} ${targets.sampleShape.join('×')} (same names, ${t.color}, ${t.layout}${t.scale !== 1 ? `, scale ${+t.scale.toPrecision(6)}` : ''})` : ''}`,
  };
}
