import { attr, GraphIndex } from '../model/graph.js';
import { readWeight, uniqueInitializerName } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { DataType } from '../model/dtype.js';
import { fromFloat32, toFloat32 } from '../model/pack.js';
import { removeValueInfo } from '../model/graph-edit.js';
import { constantTensor, consumerColumns, type ChannelPlan, type VectorEdit } from './channel-flow.js';
import { resizeLayer, takeCols, takeRows } from './reshape-weights.js';
import { applyConstantEdits } from '../model/shape-elements.js';

/**
 * Removing the output channels a ChannelPlan (channel-flow.ts) traced: the producer keeps rows
 * `keep`, each depthwise Conv on the way keeps the same rows (and its group shrinks with them), each
 * consumer loses the weight columns that read a dropped channel, each per-channel constant loses
 * those elements, each Reshape target that counts the channels shrinks in proportion, and the
 * declared shapes of the values they flow through are dropped for ONNX Runtime to infer again.
 *
 *   y = Σ_c W_cons[:, c] · f(W_prod[c] x)  ->  the same sum over kept c   (exact when dropped channels are zero)
 */

/** Keep elements `keep` of the 1-D initializer `name` (a bias, a norm's scale). */
export function sliceVector(model: Model, name: string, keep: number[]): void {
  const t = model.tensor(name);
  const v = toFloat32(t.dataType, t.data, t.dims.reduce((a, b) => a * b, 1));
  const kept = Float32Array.from(keep, (i) => v[i]!);
  model.setInitializer({ name, dataType: DataType.FLOAT, dims: [keep.length], data: new Uint8Array(kept.buffer) });
}

/** Indices of an axis of length `total` that survive when channels `dropped` (at `offset`) go. */
function survivors(total: number, offset: number, dropped: Set<number>): number[] {
  return Array.from({ length: total }, (_, i) => i).filter((i) => i < offset || !dropped.has(i - offset));
}

/** A per-channel constant without the dropped channels' entries, written where only this node reads it or as a fresh copy. */
function editVector(model: Model, index: GraphIndex, edit: VectorEdit, dropped: Set<number>): void {
  const t = constantTensor(model, index, edit.tensor)!;
  const data = toFloat32(t.dataType, t.data, t.dims.reduce((a, b) => a * b, 1));
  const keep = survivors(edit.total, edit.offset, dropped);
  const outer = t.dims.slice(0, edit.axis).reduce((a, b) => a * b, 1);
  const inner = t.dims.slice(edit.axis + 1).reduce((a, b) => a * b, 1);
  const out = new Float32Array(outer * keep.length * inner);
  for (let o = 0; o < outer; o++) {
    keep.forEach((k, j) => out.set(data.subarray((o * edit.total + k) * inner, (o * edit.total + k + 1) * inner), (o * keep.length + j) * inner));
  }
  const dims = t.dims.map((d, i) => (i === edit.axis ? keep.length : d));
  const sole = model.hasInitializer(edit.tensor) && index.consumerCount(edit.tensor) === 1;
  const name = sole ? edit.tensor : uniqueInitializerName(model, `${edit.node.name || edit.tensor}/${edit.tensor}`);
  model.setInitializer({ name, dataType: t.dataType, dims, data: fromFloat32(t.dataType, out) });
  edit.node.input![edit.input] = name;
}

export interface RemovalStat {
  width: number;
  kept: number;
  bytesBefore: number;
  bytesAfter: number;
}

const weightBytes = (layers: LinearLayer[]) => layers.reduce((a, l) => a + l.outFeatures * l.inFeatures * 4, 0);

/** Keep the producer's output channels `keep` (ascending) and narrow everything `plan` found downstream. */
export function removeChannels(model: Model, plan: ChannelPlan, keep: number[]): RemovalStat {
  const { producer } = plan;
  const touched = [producer, ...plan.depthwise.map((d) => d.layer), ...plan.consumers.map((c) => c.layer)];
  const bytesBefore = weightBytes(touched);
  const kept = new Set(keep);
  const dropped = new Set(Array.from({ length: plan.width }, (_, c) => c).filter((c) => !kept.has(c)));
  // read every weight before writing any: a rewrite may rename what a later layer reads
  const weights = new Map(touched.map((l) => [l, readWeight(model, l)]));

  // producer rows
  const rows = (l: LinearLayer, w: Float32Array, rowsKept: number[]) => {
    resizeLayer(model, l, takeRows(w, l.inFeatures, rowsKept), rowsKept.length, l.inFeatures);
    if (l.bias) sliceVector(model, l.bias, rowsKept);
  };
  rows(producer, weights.get(producer)!, keep);
  for (const { layer, layout } of plan.depthwise) {
    const rowsKept = survivors(layout.total, layout.offset, dropped);
    rows(layer, weights.get(layer)!, rowsKept);
    const g = layer.node.attribute!.find((a) => a.name === 'group')!;
    Object.assign(g, attr.int('group', rowsKept.length));
    layer.group = rowsKept.length;
  }
  // consumer columns
  for (const { layer, layout } of plan.consumers) {
    const gone = new Set([...dropped].flatMap((c) => consumerColumns(layer, layout, c)));
    const cols = Array.from({ length: layer.inFeatures }, (_, i) => i).filter((i) => !gone.has(i));
    resizeLayer(model, layer, takeCols(weights.get(layer)!, layer.outFeatures, layer.inFeatures, cols), layer.outFeatures, cols.length);
  }
  // per-channel constants and Reshape targets on the way
  const fresh = new GraphIndex(model.graph);
  for (const v of plan.vectors) editVector(model, fresh, v, dropped);
  applyConstantEdits(
    model,
    new GraphIndex(model.graph),
    plan.reshapes.map((r) => ({ source: r.source, value: (r.value / r.total) * (r.total - dropped.size) })),
  );
  for (const v of plan.values) removeValueInfo(model.graph, 'value_info', v);
  return { width: plan.width, kept: keep.length, bytesBefore, bytesAfter: weightBytes(touched) };
}
