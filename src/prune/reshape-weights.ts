import { writeWeight } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';

/** Rows `keep` of W [rows, cols]. */
export function takeRows(W: Float32Array, cols: number, keep: number[]): Float32Array {
  const out = new Float32Array(keep.length * cols);
  keep.forEach((r, i) => out.set(W.subarray(r * cols, (r + 1) * cols), i * cols));
  return out;
}

/** Columns `keep` of W [rows, cols]. */
export function takeCols(W: Float32Array, rows: number, cols: number, keep: number[]): Float32Array {
  const out = new Float32Array(rows * keep.length);
  for (let r = 0; r < rows; r++) keep.forEach((c, i) => (out[r * keep.length + i] = W[r * cols + c]!));
  return out;
}

/** Store W [out, in] under a layer whose shape changed (structured pruning). */
export function resizeLayer(model: Model, layer: LinearLayer, W: Float32Array, out: number, inn: number): void {
  layer.outFeatures = out;
  layer.inFeatures = inn;
  layer.weightShape = layer.kind === 'matmul' ? [inn, out] : [out, inn];
  writeWeight(model, layer, W);
}
