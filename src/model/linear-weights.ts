import { DataType } from './dtype.js';
import { dequantize } from './dequantize.js';
import { removeNodes } from './graph-edit.js';
import { attrInt, attrInts, GraphIndex } from './graph.js';
import type { LinearLayer } from './linears.js';
import { readInt64s } from './linears.js';
import type { Model } from './model.js';
import { permute, transpose2d } from './ndarray.js';
import { fromFloat32, toFloat32 } from './pack.js';

/**
 * Weights inside kernels are `[out, in]` row-major float32 (conv: `[out, in/g·kh·kw]`). These two
 * functions are the only place that knows how a layer stores them.
 */
export function readWeight(model: Model, layer: LinearLayer): Float32Array {
  let t = model.tensor(layer.weight);
  let data = toFloat32(t.dataType, t.data, t.dims.reduce((a, b) => a * b, 1));
  let shape = t.dims;
  for (const n of layer.weightChain) {
    if (n.op_type === 'Transpose') {
      const perm = attrInts(n, 'perm') ?? shape.map((_, i) => shape.length - 1 - i);
      ({ data, shape } = permute(data, shape, perm));
    } else if (n.op_type === 'Reshape') {
      shape = layer.weightChain.at(-1) === n ? layer.weightShape : resolveReshape(shape, readInt64s(model, n.input![1]));
    } else if (n.op_type === 'DequantizeLinear') {
      const scale = model.tensor(n.input![1]);
      const zp = n.input![2] ? model.tensor(n.input![2]) : undefined;
      data = dequantize({ ...t, dims: shape }, scale, zp, attrInt(n, 'axis', 1), attrInt(n, 'block_size', 0));
      t = { ...t, dataType: DataType.FLOAT };
    }
  }
  return toOutIn(layer, data);
}

/**
 * Store `W` (`[out, in]` float32, or `dataType` float16/bfloat16/float64) as the layer's weight.
 * A plain initializer read by this layer alone is overwritten in its stored layout; otherwise a new
 * initializer `${layer.name}.weight` feeds the node directly and nodes left unused are dropped.
 */
export function writeWeight(model: Model, layer: LinearLayer, W: Float32Array, dataType: number = DataType.FLOAT): void {
  const consumed = fromOutIn(layer, W);
  const index = new GraphIndex(model.graph);
  const transposesOnly = layer.weightChain.every((n) => n.op_type === 'Transpose' && index.consumerCount(n.output![0]!) === 1);
  // an initializer also listed as a graph input (IR < 4) is still this layer's own: setInitializer updates that declaration
  const sole = transposesOnly && index.consumerCount(layer.weight) === 1;
  nameAfterLayer(layer);
  if (sole) {
    // undo the chain's transposes so the initializer keeps its stored name and layout
    let data = consumed;
    let shape = layer.weightShape;
    for (const n of [...layer.weightChain].reverse()) {
      const perm = attrInts(n, 'perm') ?? shape.map((_, i) => shape.length - 1 - i);
      const inverse = perm.map((_, i) => perm.indexOf(i));
      ({ data, shape } = permute(data, shape, inverse));
    }
    model.setInitializer({ name: layer.weight, dataType, dims: shape, data: fromFloat32(dataType, data) });
    return;
  }
  const name = uniqueInitializerName(model, `${layer.name}.weight`);
  model.setInitializer({ name, dataType, dims: layer.weightShape, data: fromFloat32(dataType, consumed) });
  layer.node.input![1] = name;
  layer.weight = name;
  layer.weightChain = [];
  removeUnused(model);
}

function toOutIn(layer: LinearLayer, consumed: Float32Array): Float32Array {
  const [a, b] = layer.weightShape;
  if (layer.kind === 'matmul') return transpose2d(consumed, a, b);
  if (layer.kind === 'gemm') return attrInt(layer.node, 'transB', 0) === 1 ? consumed : transpose2d(consumed, a, b);
  return consumed;
}

function fromOutIn(layer: LinearLayer, W: Float32Array): Float32Array {
  if (layer.kind === 'matmul') return transpose2d(W, layer.outFeatures, layer.inFeatures);
  if (layer.kind === 'gemm' && attrInt(layer.node, 'transB', 0) !== 1) return transpose2d(W, layer.outFeatures, layer.inFeatures);
  return W;
}

function resolveReshape(shape: number[], target: number[]): number[] {
  const total = shape.reduce((a, b) => a * b, 1);
  const fixed = target.map((d, i) => (d === 0 ? shape[i] : d));
  const rest = fixed.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  return fixed.map((d) => (d === -1 ? total / rest : d));
}

/**
 * A layer's name is derived from its node's name, or from its weight's when the node has none; a
 * rewrite that renames the weight would rename the layer, so such a node is named after the layer
 * first and later lookups by name find it.
 */
export function nameAfterLayer(layer: LinearLayer): void {
  if (!layer.node.name) layer.node.name = layer.name.replace(/#\d+$/, '');
}

/**
 * A new initializer under a unique name derived from `name`, for constants a rewrite adds:
 * float32, int8, int32 or int64 values. Returns the name it got.
 */
export function addConstant(model: Model, name: string, dataType: number, dims: number[], values: ArrayLike<number>): string {
  const unique = uniqueInitializerName(model, name);
  const typed =
    dataType === DataType.INT64
      ? BigInt64Array.from(Array.from(values), (v) => BigInt(v))
      : dataType === DataType.INT32
        ? Int32Array.from(values)
        : dataType === DataType.INT8
          ? Int8Array.from(values)
          : Float32Array.from(values);
  model.setInitializer({ name: unique, dataType, dims, data: new Uint8Array(typed.buffer) });
  return unique;
}

/** An initializer `name` holding exactly this tensor: the existing one when it does, else a new one (renamed if the name is taken). */
export function sharedConstant(model: Model, name: string, dataType: number, dims: number[], data: Uint8Array): string {
  if (model.hasInitializer(name)) {
    const t = model.tensor(name);
    if (t.dataType === dataType && t.dims.join() === dims.join() && t.data.length === data.length && t.data.every((b, i) => b === data[i])) return name;
  }
  const unique = uniqueInitializerName(model, name);
  model.setInitializer({ name: unique, dataType, dims, data });
  return unique;
}

export function uniqueInitializerName(model: Model, wanted: string): string {
  if (!model.hasInitializer(wanted)) return wanted;
  for (let i = 2; ; i++) if (!model.hasInitializer(`${wanted}_${i}`)) return `${wanted}_${i}`;
}

/** Drop nodes whose outputs nobody reads and initializers no node reads (graph outputs count as readers). */
export function removeUnused(model: Model): void {
  const graph = model.graph;
  for (;;) {
    const index = new GraphIndex(graph);
    if (removeNodes(graph, (n) => !(n.output ?? []).some((o) => o && index.consumerCount(o) > 0)) === 0) break;
  }
  const index = new GraphIndex(graph);
  for (const t of [...(graph.initializer ?? [])]) {
    if (index.consumerCount(t.name ?? '') === 0) model.removeInitializer(t.name ?? '');
  }
}
