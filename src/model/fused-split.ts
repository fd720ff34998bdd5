import { attrInt, type GraphIndex } from './graph.js';
import type { LinearLayer } from './linears.js';
import type { Model } from './model.js';
import type { NodeProto } from './onnx-schema.js';
import { applyConstantEdits, shapeElements, type ConstantSource } from './shape-elements.js';

/**
 * A fused linear: one weight whose output rows are several projections side by side, cut apart by
 * the one Split that reads the layer's output (Phi-3's qkv_proj → q | k | v, gate_up_proj → gate |
 * up). Structured pruning keeps rows inside each part and rewrites the Split's sizes, so the fused
 * layer stays one layer (one weight, one name in recipes and in the checkpoint).
 */
export interface FusedLinear {
  layer: LinearLayer;
  split: NodeProto;
  /** rows of each part, in output order */
  widths: number[];
  /** where each width is stored (Split's sizes input) */
  sources: ConstantSource[];
  /** the value each part leaves as */
  outputs: string[];
}

/** `layer` as `parts` parts, or undefined when its output is not cut by exactly one Split on the feature axis with constant sizes. */
export function fusedParts(model: Model, index: GraphIndex, layer: LinearLayer, parts: number): FusedLinear | undefined {
  const readers = index.consumers.get(layer.output) ?? [];
  const split = readers[0];
  if (readers.length !== 1 || split?.op_type !== 'Split' || (split.output ?? []).length !== parts || !split.input?.[1]) return undefined;
  const axis = attrInt(split, 'axis', 0);
  if (axis !== -1 && axis !== 2) return undefined;
  const sizes = shapeElements(model, index, split.input[1], split, 1);
  if (!sizes || sizes.length !== parts || !sizes.every((s) => s.kind === 'const' && s.source)) return undefined;
  const widths = sizes.map((s) => (s.kind === 'const' ? s.value : 0));
  if (widths.reduce((a, b) => a + b, 0) !== layer.outFeatures) return undefined;
  return { layer, split, widths, sources: sizes.map((s) => (s.kind === 'const' ? s.source! : undefined!)), outputs: split.output! };
}

/** Rows of the fused weight that keep rows `keep[p]` (within part p) of every part. */
export function fusedRows(f: FusedLinear, keep: readonly (readonly number[])[]): number[] {
  const rows: number[] = [];
  let offset = 0;
  f.widths.forEach((w, p) => {
    rows.push(...keep[p]!.map((r) => offset + r));
    offset += w;
  });
  return rows;
}

/** After the weight lost rows: the Split cuts the new widths (a fresh constant; others reading the old one keep it). */
export function resizeSplit(model: Model, index: GraphIndex, f: FusedLinear, widths: number[]): void {
  applyConstantEdits(model, index, f.sources.map((source, p) => ({ source, value: widths[p]! })));
}
