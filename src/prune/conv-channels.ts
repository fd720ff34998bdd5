import { DataType } from '../model/dtype.js';
import { attrInt, GraphIndex } from '../model/graph.js';
import { readWeight, writeWeight } from '../model/linear-weights.js';
import { linears, type LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import type { NodeProto } from '../model/onnx-schema.js';
import { toFloat32 } from '../model/pack.js';

/**
 * Removing output channels of a Conv and the matching input channels of every consumer. Channels
 * flow through ops that keep the channel axis (Relu, pooling, BatchNormalization, Dropout) and
 * through channel Concats (at an offset); they must end in a Conv's input (group 1), whose weight
 * loses those input columns. A path that reaches a graph output or any other op (Flatten, Reshape,
 * Softmax over classes) means the channels cannot be removed, and the conv is left alone.
 */

const PASS_THROUGH = new Set(['Relu', 'LeakyRelu', 'Sigmoid', 'Clip', 'MaxPool', 'AveragePool', 'Dropout', 'Identity', 'BatchNormalization']);

interface Plan {
  /** consumer convs with the input channel range this conv's outputs occupy */
  convs: { layer: LinearLayer; offset: number; total: number }[];
  batchNorms: NodeProto[];
}

/** Output channels of a 4-D activation, traced back to the convs that made it. */
function channelsOf(model: Model, index: GraphIndex, tensor: string): number | undefined {
  const p = index.producer.get(tensor);
  if (!p) return undefined;
  if (p.op_type === 'Conv') return model.tensor(p.input![1]!).dims[0];
  if (PASS_THROUGH.has(p.op_type ?? '')) return channelsOf(model, index, p.input![0]!);
  if (p.op_type === 'Concat' && [1, -3].includes(attrInt(p, 'axis', 0))) {
    let sum = 0;
    for (const i of p.input ?? []) {
      const c = channelsOf(model, index, i);
      if (c === undefined) return undefined;
      sum += c;
    }
    return sum;
  }
  return undefined;
}

function plan(model: Model, index: GraphIndex, all: LinearLayer[], tensor: string, offset: number, total: number, out: Plan): boolean {
  for (const c of index.consumers.get(tensor) ?? []) {
    const op = c.op_type ?? '';
    if (op === 'BatchNormalization' && c.input![0] === tensor) {
      if (offset !== 0) return false; // a BatchNorm after a Concat would need a partial slice
      out.batchNorms.push(c);
      if (!plan(model, index, all, c.output![0]!, offset, total, out)) return false;
    } else if (PASS_THROUGH.has(op) && c.input![0] === tensor) {
      if (!plan(model, index, all, c.output![0]!, offset, total, out)) return false;
    } else if (op === 'Concat' && [1, -3].includes(attrInt(c, 'axis', 0))) {
      let before = 0;
      for (const i of c.input!) {
        if (i === tensor) break;
        const ch = channelsOf(model, index, i);
        if (ch === undefined) return false;
        before += ch;
      }
      const concatTotal = channelsOf(model, index, c.output![0]!);
      if (concatTotal === undefined) return false;
      if (!plan(model, index, all, c.output![0]!, before + offset, concatTotal, out)) return false;
    } else if (op === 'Conv' && c.input![0] === tensor && attrInt(c, 'group', 1) === 1) {
      const layer = all.find((l) => l.node === c);
      if (!layer) return false;
      out.convs.push({ layer, offset, total });
    } else {
      return false;
    }
  }
  return true;
}

/** Whether `conv`'s output channels can be removed; the consumers to adjust when they can. */
export function convRemovalPlan(model: Model, conv: LinearLayer): Plan | undefined {
  const index = new GraphIndex(model.graph);
  const out: Plan = { convs: [], batchNorms: [] };
  const channels = conv.outFeatures;
  return plan(model, index, linears(model), conv.output, 0, channels, out) && out.convs.length > 0 ? out : undefined;
}

/** Keep elements `keep` of the 1-D initializer `name` (a bias, a norm's scale). */
export function sliceVector(model: Model, name: string, keep: number[]): void {
  const t = model.tensor(name);
  const v = toFloat32(t.dataType, t.data, t.dims.reduce((a, b) => a * b, 1));
  const kept = Float32Array.from(keep, (i) => v[i]!);
  model.setInitializer({ name, dataType: DataType.FLOAT, dims: [keep.length], data: new Uint8Array(kept.buffer) });
}

/** Keep output channels `keep` of `conv` and the matching input channels downstream (see `convRemovalPlan`). */
export function removeConvChannels(model: Model, conv: LinearLayer, keep: number[], p: Plan): void {
  const width = conv.outFeatures;
  const per = conv.inFeatures; // in/g · kh · kw
  const W = readWeight(model, conv);
  const kept = new Float32Array(keep.length * per);
  keep.forEach((o, i) => kept.set(W.subarray(o * per, (o + 1) * per), i * per));
  conv.outFeatures = keep.length;
  conv.weightShape = [keep.length, ...conv.weightShape.slice(1)];
  writeWeight(model, conv, kept);
  if (conv.bias) sliceVector(model, conv.bias, keep);
  for (const bn of p.batchNorms) for (const i of bn.input!.slice(1)) sliceVector(model, i, keep);
  const kept_ = new Set(keep);
  for (const { layer, offset } of p.convs) {
    const [O, I, ...k] = layer.weightShape as [number, number, ...number[]];
    const spatial = k.reduce((a, b) => a * b, 1);
    // the consumer reads this conv's channels at [offset, offset + width) of its input
    const inKeep = Array.from({ length: I }, (_, c) => c).filter((c) => c < offset || c >= offset + width || kept_.has(c - offset));
    const Wc = readWeight(model, layer); // [O, I·spatial]
    const out = new Float32Array(O * inKeep.length * spatial);
    for (let o = 0; o < O; o++) {
      inKeep.forEach((c, j) => out.set(Wc.subarray((o * I + c) * spatial, (o * I + c + 1) * spatial), (o * inKeep.length + j) * spatial));
    }
    layer.inFeatures = inKeep.length * spatial;
    layer.weightShape = [O, inKeep.length, ...k];
    writeWeight(model, layer, out);
  }
}
