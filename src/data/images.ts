import { gunzipSync } from 'node:zlib';
import { UserError } from '../errors.js';
import { formatBytes, INPUT_LIMITS, readInputFile } from '../util/read-file.js';
import { sha256File } from '../util/hash.js';
import type { TensorDataset } from './types.js';

/** Reads a file, gunzipping it when it starts with the gzip magic bytes; both sides are capped at INPUT_LIMITS.samples. */
export function readMaybeGzip(path: string, what: string, field?: string): Uint8Array {
  const cap = INPUT_LIMITS.samples;
  const raw = readInputFile(path, what, { maxBytes: cap, field, fix: 'use a smaller file' });
  if (raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      return gunzipSync(raw, { maxOutputLength: cap });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new UserError(`${path}: ${what} decompresses to more than pare reads (${formatBytes(cap)})${field ? ` (field ${field})` : ''}; use a smaller file`);
      }
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
 * Samples → float32: x · scale, then (x − mean[c]) / std[c] along the channel axis of the layout
 * (last axis for nhwc, first for nchw; without a layout one mean/std value applies to every
 * element). A single mean or std value applies to every channel.
 */
export function normalise(values: ArrayLike<number>, count: number, shape: number[], layout: 'nhwc' | 'nchw' | undefined, n: Normalisation, where: string): Float32Array {
  const per = shape.reduce((a, b) => a * b, 1);
  const channels = layout === 'nhwc' ? shape[2]! : layout === 'nchw' ? shape[0]! : 1;
  const perChannel = (field: 'mean' | 'std', fill: number): Float64Array => {
    const v = n[field];
    if (v && v.length !== 1 && v.length !== channels) {
      throw new UserError(`${where}: ${field} has ${v.length} values for ${channels} channel${channels === 1 ? '' : 's'}${layout ? ` (${layout})` : ' (no layout: give one value)'} (field ${field})`);
    }
    return Float64Array.from({ length: channels }, (_, c) => (v ? v[v.length === 1 ? 0 : c]! : fill));
  };
  const mean = perChannel('mean', 0);
  const std = perChannel('std', 1);
  const zero = std.findIndex((d) => d === 0);
  if (zero >= 0) throw new UserError(`${where}: std[${zero}] is 0 (field std)`);
  const out = new Float32Array(count * per);
  const scale = n.scale;
  // nhwc: the channel cycles fastest; nchw (and no layout): one channel per contiguous plane
  const run = layout === 'nhwc' ? channels : 1;
  const plane = layout === 'nhwc' ? 1 : per / channels;
  for (let s = 0; s < count; s++) {
    const base = s * per;
    for (let c = 0; c < channels; c++) {
      const m = mean[c]!;
      const d = std[c]!;
      const from = base + c * plane;
      const to = layout === 'nhwc' ? base + per : from + plane;
      for (let i = from; i < to; i += run) out[i] = (values[i]! * scale - m) / d;
    }
  }
  return out;
}

/** One label per sample, none negative; out-of-range classes are checked against the model at evaluation. */
export function checkLabels(labels: ArrayLike<number>, count: number, labelsPath: string, samplesPath: string, noun = 'images'): void {
  if (labels.length !== count) throw new UserError(`${labelsPath}: labels: ${labels.length} labels for ${count} ${noun} in ${samplesPath}`);
  for (let i = 0; i < labels.length; i++) {
    if (labels[i]! < 0 || !Number.isInteger(labels[i])) throw new UserError(`${labelsPath}: labels: label ${labels[i]} of sample ${i} is not a class index`);
  }
}

/** ", scale 0.00392157, mean [..], std [..]" for the settings that differ from the identity. */
export function normText(n: Normalisation): string {
  const fmt = (v: number) => String(+v.toPrecision(6));
  let t = n.scale !== 1 ? `, scale ${fmt(n.scale)}` : '';
  if (n.mean) t += `, mean [${n.mean.map(fmt).join(', ')}]`;
  if (n.std) t += `, std [${n.std.map(fmt).join(', ')}]`;
  return t;
}

export function fileRef(path: string): { path: string; sha256: string } {
  return { path, sha256: sha256File(path) };
}

export type { TensorDataset };
