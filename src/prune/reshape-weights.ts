import { attrInt } from '../model/graph.js';
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

/**
 * Store W [out, in] under a layer whose shape changed (structured pruning); its consumed shape
 * follows its kind: Conv [O, I/g, ...kernel] (`inn` counts I/g · kernel), Gemm [out, in] with
 * transB and [in, out] without, MatMul [in, out].
 */
export function resizeLayer(model: Model, layer: LinearLayer, W: Float32Array, out: number, inn: number): void {
  if (layer.kind === 'conv') {
    const kernel = layer.weightShape.slice(2);
    layer.weightShape = [out, inn / kernel.reduce((a, b) => a * b, 1), ...kernel];
  } else {
    layer.weightShape = layer.kind === 'gemm' && attrInt(layer.node, 'transB', 0) === 1 ? [out, inn] : [inn, out];
  }
  layer.outFeatures = out;
  layer.inFeatures = inn;
  writeWeight(model, layer, W);
}
