import { gunzipSync } from 'node:zlib';
import { UserError } from '../errors.js';
import { readInputFile } from '../model/onnx-io.js';
import { sha256File } from '../util/hash.js';
import type { TensorDataset } from './types.js';

/** Reads a file, gunzipping it when it starts with the gzip magic bytes. */
export function readMaybeGzip(path: string, what: string): Uint8Array {
  const raw = readInputFile(path, what);
  if (raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      return gunzipSync(raw);
    } catch (e) {
      throw new UserError(`${path}: corrupt gzip data (${(e as Error).message})`);
    }
  }
  return raw;
}

export interface Normalisation {
  scale: number;
  mean?: number[];
  std?: number[];
  limit?: number;
}

/**
 * uint8 pixels → float32: pixel · scale, then (x − mean[c]) / std[c] along the channel axis of
 * the layout (`channels` values; one mean/std value applies to every channel).
 */
export function normalise(pixels: ArrayLike<number>, count: number, shape: number[], layout: 'nhwc' | 'nchw' | undefined, n: Normalisation, where: string): Float32Array {
  const per = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(count * per);
  const channels = layout === 'nhwc' ? shape[2]! : layout === 'nchw' ? shape[0]! : 1;
  for (const [field, v] of [['mean', n.mean], ['std', n.std]] as const) {
    if (v && v.length !== 1 && v.length !== channels) throw new UserError(`${where}: ${field} has ${v.length} values for ${channels} channels (field ${field})`);
  }
  const channelOf = (i: number): number => (layout === 'nhwc' ? i % channels : layout === 'nchw' ? Math.floor(i / (per / channels)) : 0);
  for (let s = 0; s < count; s++) {
    for (let i = 0; i < per; i++) {
      const c = channelOf(i);
      const m = n.mean ? n.mean[n.mean.length === 1 ? 0 : c]! : 0;
      const d = n.std ? n.std[n.std.length === 1 ? 0 : c]! : 1;
      out[s * per + i] = (pixels[s * per + i]! * n.scale - m) / d;
    }
  }
  return out;
}

export function checkLabels(labels: Int32Array, count: number, labelsPath: string, imagesPath: string): void {
  if (labels.length !== count) throw new UserError(`${labelsPath}: ${labels.length} labels for ${count} images in ${imagesPath} (field labels)`);
}

export function fileRef(path: string): { path: string; sha256: string } {
  return { path, sha256: sha256File(path) };
}

export type { TensorDataset };
