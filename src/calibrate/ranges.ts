import type { Model } from '../model/model.js';
import { float16ToFloat32 } from '../model/pack.js';
import { captureSession, type SessionOptions } from '../runtime/ort.js';
import type { Feeds } from './feeds.js';

/** What calibration saw of one value: ONNX Runtime's element type and the largest magnitude over every sample. */
export interface ValueRange {
  type: string;
  /** max |x| over all samples; Infinity when some element was ±inf or NaN */
  maxAbs: number;
  /** the sample (0-based) where maxAbs was reached */
  sample: number;
}

/** Largest |x| of a float array; Infinity as soon as an element is not finite. */
export function maxAbsOf(data: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < data.length; i++) {
    const a = Math.abs(data[i]!);
    if (!(a <= m)) {
      if (!Number.isFinite(a)) return Infinity;
      m = a;
    }
  }
  return m;
}

/**
 * Type and max |x| of `values` (node outputs of `model`'s main graph) over every calibration
 * sample, measured in ONNX Runtime one sample at a time. Float values (float32, float16) get their
 * magnitude; other types only their type.
 */
export async function measureRanges(model: Model, values: readonly string[], feeds: readonly Feeds[], opts: SessionOptions = {}): Promise<Map<string, ValueRange>> {
  const ranges = new Map<string, ValueRange>();
  if (values.length === 0) return ranges;
  const session = await captureSession(model, [...values], opts);
  try {
    for (const [sample, feed] of feeds.entries()) {
      const out = await session.run(feed, [...values]);
      for (const name of values) {
        const t = out[name];
        if (!t) continue;
        const isFloat = t.type === 'float32' || t.type === 'float16';
        const m = isFloat ? maxAbsOf(t.type === 'float16' ? float16ToFloat32(t.data as Uint16Array) : (t.data as Float32Array)) : 0;
        const prev = ranges.get(name);
        if (!prev || m > prev.maxAbs) ranges.set(name, { type: t.type, maxAbs: m, sample });
        t.dispose?.();
      }
    }
  } finally {
    await session.release();
  }
  return ranges;
}
