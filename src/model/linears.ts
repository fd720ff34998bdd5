import type { Model } from './model.js';
import { attrInt, attrInts, GraphIndex } from './graph.js';
import { int64ToNumber, type NodeProto } from './onnx-schema.js';

/**
 * The linear layers of a graph, found once: MatMul or Gemm whose weight is a constant (an initializer,
 * possibly through Transpose, Reshape or DequantizeLinear) and whose input is not, and Conv with a
 * constant kernel.
 * Passes ask for these instead of matching raw nodes.
 */
export interface LinearLayer {
  /** the layer name a user knows: `layers.0.mlp.gate_proj` for PyTorch's `/layers.0/mlp/gate_proj/MatMul` */
  name: string;
  kind: 'matmul' | 'gemm' | 'conv';
  node: NodeProto;
  /** initializer the weight is read from */
  weight: string;
  /** the nodes between that initializer and `node`, nearest the initializer first */
  weightChain: NodeProto[];
  /** shape of the weight as `node` consumes it (MatMul [in,out]; Gemm [out,in] when transB; Conv [O, I/g, ...k]) */
  weightShape: number[];
  outFeatures: number;
  /** conv: in/group · prod(kernel) */
  inFeatures: number;
  bias?: string;
  /** the activation tensor that feeds the layer */
  input: string;
  output: string;
  group?: number;
}

const CHAIN_OPS = new Set(['Transpose', 'Reshape', 'DequantizeLinear', 'Cast']);

/** Values computed from initializers alone (initializers, and outputs of nodes reading only such values; the graph is in topological order). */
export function initializerValues(model: Model): Set<string> {
  const known = new Set((model.graph.initializer ?? []).map((t) => t.name ?? ''));
  for (const n of model.graph.node ?? []) if ((n.input ?? []).every((i) => !i || known.has(i))) for (const o of n.output ?? []) known.add(o);
  return known;
}

export function linears(model: Model): LinearLayer[] {
  const index = new GraphIndex(model.graph);
  const constants = initializerValues(model);
  const found: LinearLayer[] = [];
  for (const node of model.graph.node ?? []) {
    const domain = node.domain ?? '';
    if (domain !== '' && domain !== 'ai.onnx') continue;
    const op = node.op_type;
    if (op !== 'MatMul' && op !== 'Gemm' && op !== 'Conv') continue;
    const inputs = node.input ?? [];
    const source = traceConstant(model, index, inputs[1]);
    if (!source) continue;
    // both operands constant: work ONNX Runtime folds at load (Kronecker's dense_at_load expansion, packed_3bit's unpacking), no layer
    if (op !== 'Conv' && constants.has(inputs[0] ?? '')) continue;
    const shape = weightShapeAfterChain(model, source.weight, source.chain);
    if (!shape) continue;
    const base = { node, weight: source.weight, weightChain: source.chain, input: inputs[0], output: node.output?.[0] ?? '' };
    if (op === 'MatMul') {
      if (shape.length !== 2) continue;
      found.push({ ...base, name: '', kind: 'matmul', weightShape: shape, inFeatures: shape[0], outFeatures: shape[1] });
    } else if (op === 'Gemm') {
      if (shape.length !== 2 || attrInt(node, 'transA', 0) !== 0) continue;
      const transB = attrInt(node, 'transB', 0) === 1;
      const [outF, inF] = transB ? shape : [shape[1], shape[0]];
      found.push({ ...base, name: '', kind: 'gemm', weightShape: shape, inFeatures: inF, outFeatures: outF, bias: constantInput(model, inputs[2]) });
    } else {
      if (shape.length < 3) continue;
      const kernel = shape.slice(2).reduce((a, b) => a * b, 1);
      found.push({
        ...base,
        name: '',
        kind: 'conv',
        weightShape: shape,
        outFeatures: shape[0],
        inFeatures: shape[1] * kernel,
        bias: constantInput(model, inputs[2]),
        group: attrInt(node, 'group', 1),
      });
    }
  }
  assignNames(found);
  return found;
}

function constantInput(model: Model, name: string | undefined): string | undefined {
  return name && model.hasInitializer(name) ? name : undefined;
}

/** Follow Transpose/Reshape/DequantizeLinear back to an initializer. */
function traceConstant(model: Model, index: GraphIndex, value: string | undefined): { weight: string; chain: NodeProto[] } | undefined {
  const chain: NodeProto[] = [];
  let current = value;
  for (let depth = 0; current && depth < 4; depth++) {
    if (model.hasInitializer(current)) return { weight: current, chain: chain.reverse() };
    const p = index.producer.get(current);
    if (!p || !CHAIN_OPS.has(p.op_type ?? '') || (p.domain ?? '') !== '') return undefined;
    // every other input of the chain node must be constant too (Reshape's shape, DQ's scale and zero point)
    if ((p.input ?? []).slice(1).some((i) => i && !model.hasInitializer(i))) return undefined;
    chain.push(p);
    current = p.input?.[0];
  }
  return undefined;
}

function weightShapeAfterChain(model: Model, weight: string, chain: NodeProto[]): number[] | undefined {
  let shape = (model.initializer(weight)!.dims ?? []).map(int64ToNumber);
  for (const n of chain) {
    if (n.op_type === 'Transpose') {
      const perm = attrInts(n, 'perm') ?? shape.map((_, i) => shape.length - 1 - i);
      shape = perm.map((p) => shape[p]);
    } else if (n.op_type === 'Reshape') {
      const target = readInt64s(model, n.input![1]);
      const known = shape.reduce((a, b) => a * b, 1);
      const fixed = target.map((d, i) => (d === 0 ? shape[i] : d));
      const rest = fixed.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
      shape = fixed.map((d) => (d === -1 ? known / rest : d));
    }
  }
  return shape.every((d) => Number.isInteger(d) && d > 0) ? shape : undefined;
}

export function readInt64s(model: Model, name: string): number[] {
  const t = model.tensor(name);
  const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out: number[] = [];
  for (let i = 0; i + 8 <= t.data.byteLength; i += 8) out.push(Number(view.getBigInt64(i, true)));
  return out;
}

/**
 * Outer module names that exports put in front of the layers (`/model/layers.0/...` in Optimum's
 * Llama exports, `/transformer/h.0/...` in GPT-2's); canonical layer names leave them out, so one
 * recipe selects the same layers in a model built from safetensors, a plain export and an Optimum export.
 */
const WRAPPERS = new Set(['model', 'transformer']);

/**
 * The canonical layer name: `/layers.0/mlp/gate_proj/MatMul` and `/model/layers.0/mlp/gate_proj/MatMul`
 * -> `layers.0.mlp.gate_proj`; a node without a path name is named after its weight
 * (`model.layers.0.mlp.gate_proj.weight` -> `layers.0.mlp.gate_proj`); duplicates get `#2`, `#3`.
 */
export function canonicalLayerName(nodeName: string, weight: string): string {
  let parts: string[];
  if (nodeName.startsWith('/')) {
    parts = nodeName.slice(1).split('/');
    if (parts.length > 1 && /^(MatMul|Gemm|Conv)(_\d+)?$/.test(parts[parts.length - 1]!)) parts.pop();
  } else {
    parts = nodeName ? [nodeName] : weight.replace(/\.weight$/, '').split('.');
  }
  while (parts.length > 1 && WRAPPERS.has(parts[0]!)) parts.shift();
  return parts.join('.');
}

function assignNames(layers: LinearLayer[]): void {
  const seen = new Map<string, number>();
  for (const l of layers) {
    const name = canonicalLayerName(l.node.name ?? '', l.weight);
    const n = (seen.get(name) ?? 0) + 1;
    seen.set(name, n);
    l.name = n === 1 ? name : `${name}#${n}`;
  }
}
