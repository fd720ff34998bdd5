import type { GraphIndex } from '../model/graph.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import type { NodeProto } from '../model/onnx-schema.js';
import { describe, isConstant, Refusal, refuse, type ChannelLayout, type ChannelPlan, type ChannelTrace, type Tracer } from './channel-layout.js';
import { dataInputs, step } from './channel-op-rules.js';

export { constantTensor, type ChannelLayout, type ChannelPlan, type ChannelTrace, type VectorEdit } from './channel-layout.js';

/**
 * Where the output channels of one linear layer (a Conv's filters, a Gemm's or MatMul's output
 * features) go, found by graph structure rather than names: forward from the layer's output through
 * ops that keep each channel apart (activations, BatchNormalization, pooling, Pad, Dropout,
 * elementwise ops with constants, Transpose, Squeeze/Unsqueeze, Flatten/Reshape that merge the channel
 * axis with the ones after or before it, channel Concats) to the layers that read them: a Conv's
 * input channels, a depthwise Conv (whose own channels go along), or a Gemm's/MatMul's input
 * features. Removing channel c then removes the producer's row c, the consumers' columns of channel
 * c, and element c of every per-channel constant on the way, and changes no output of the graph
 * when channel c is zero (a trace ends only in consumers whose output ignores a zero channel).
 *
 * A trace is refused, naming the op, when the channels reach a graph output, an op that mixes
 * channels (Softmax over them, LRN, a Reshape that splits the axis), another branch's values (a
 * residual Add: those channels are tied to another layer's), or an op this reader does not know.
 */

/** The trace of `producer`'s output channels; `layers` are the model's linear layers (linears(model)). */
export function traceChannels(model: Model, index: GraphIndex, layers: readonly LinearLayer[], producer: LinearLayer): ChannelTrace {
  const rank = producer.kind === 'conv' ? producer.weightShape.length : producer.kind === 'gemm' ? 2 : undefined;
  if (producer.kind === 'conv' && (producer.group ?? 1) !== 1) return { refused: `it is a grouped Conv (group ${producer.group})` };
  const plan: ChannelPlan = { producer, width: producer.outFeatures, consumers: [], depthwise: [], vectors: [], reshapes: [], values: new Set() };
  const t: Tracer = { model, index, layerOf: new Map(layers.map((l) => [l.node, l])), plan, layouts: new Map() };
  try {
    if (producer.kind === 'gemm' && producer.bias && model.tensor(producer.bias).dims.length === 2 && model.tensor(producer.bias).dims[0] !== 1) refuse('its bias is not one vector');
    const reachable = downstream(index, producer.output);
    const done = new Set<NodeProto>([producer.node]);
    const waiting = new Set<NodeProto>();
    const queue = [producer.output];
    t.layouts.set(producer.output, { fromEnd: 1, rank, offset: 0, total: producer.outFeatures });
    if (producer.kind === 'conv') t.layouts.get(producer.output)!.fromEnd = rank! - 1;
    while (queue.length > 0) {
      const value = queue.shift()!;
      plan.values.add(value);
      for (const node of index.consumers.get(value) ?? []) {
        if (node.op_type === '<graph output>') refuse(`its channels reach the graph output '${value}'`);
        if (done.has(node)) continue;
        // a Concat puts other layers' channels beside these: it waits only for inputs this trace can still reach
        const ready = dataInputs(node).every((i) => {
          const name = node.input![i];
          return !name || t.layouts.has(name) || isConstant(model, index, name) || (node.op_type === 'Concat' && !reachable.has(name));
        });
        if (!ready) {
          waiting.add(node);
          continue;
        }
        waiting.delete(node);
        done.add(node);
        for (const [out, layout] of step(t, node)) {
          t.layouts.set(out, layout);
          queue.push(out);
        }
      }
    }
    const joined = [...waiting][0];
    if (joined) refuse(`its channels meet another branch's at ${describe(joined)} (channels tied to another layer's)`);
    if (plan.consumers.length === 0) refuse('nothing reads its channels');
    return { plan };
  } catch (e) {
    if (e instanceof Refusal) return { refused: e.message };
    throw e;
  }
}

/** Every value computed from `start`, `start` included. */
function downstream(index: GraphIndex, start: string): Set<string> {
  const seen = new Set([start]);
  const queue = [start];
  while (queue.length > 0) {
    for (const node of index.consumers.get(queue.shift()!) ?? []) {
      for (const o of node.output ?? []) {
        if (o && !seen.has(o)) {
          seen.add(o);
          queue.push(o);
        }
      }
    }
  }
  return seen;
}

/** The columns of `layer`'s [out, in] weight that read channel `c` (0-based within the producer) through `layout`. */
export function consumerColumns(layer: LinearLayer, layout: ChannelLayout, c: number): number[] {
  const ch = layout.offset + c;
  if (layer.kind === 'conv') {
    const spatial = layer.inFeatures / layer.weightShape[1]!;
    return Array.from({ length: spatial }, (_, i) => ch * spatial + i);
  }
  if (!layout.flat) return [ch];
  const per = layer.inFeatures / layout.total;
  if (layout.flat === 'major') return Array.from({ length: per }, (_, i) => ch * per + i);
  return Array.from({ length: per }, (_, o) => o * layout.total + ch);
}
