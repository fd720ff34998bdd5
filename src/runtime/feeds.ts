import type { HostFeeds } from '../model/io.js';
import { float16ToFloat32 } from '../model/pack.js';
import { ort } from './ort.js';

/** Host feeds as ONNX Runtime tensors (the typed arrays are shared, not copied). */
export function ortFeeds(feeds: HostFeeds): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = {};
  for (const [name, f] of Object.entries(feeds)) out[name] = new ort.Tensor(f.type, f.data, f.dims);
  return out;
}

/**
 * An output's values as float32: a float32 tensor's own array, a float16 one's (a float16 graph's
 * logits, which ONNX Runtime hands over as raw bits) widened.
 */
export function float32Data(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'float16') {
    const d = t.data as unknown as { buffer: ArrayBufferLike; byteOffset: number; length: number };
    return float16ToFloat32(new Uint16Array(d.buffer, d.byteOffset, d.length));
  }
  throw new Error(`float32Data: a ${t.type} tensor is not float`);
}
