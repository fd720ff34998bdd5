import type { HostFeeds } from '../model/io.js';
import { ort } from './ort.js';

/** Host feeds as ONNX Runtime tensors (the typed arrays are shared, not copied). */
export function ortFeeds(feeds: HostFeeds): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = {};
  for (const [name, f] of Object.entries(feeds)) out[name] = new ort.Tensor(f.type, f.data, f.dims);
  return out;
}
