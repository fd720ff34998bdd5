import { UserError } from '../errors.js';
import { DataType } from './dtype.js';
import { attrFloat, makeNode } from './graph.js';
import { addConstant } from './linear-weights.js';
import type { LinearLayer } from './linears.js';
import type { Model } from './model.js';
import type { NodeProto } from './onnx-schema.js';
import { toFloat32 } from './pack.js';

/**
 * A rewrite that replaces a layer's x·W by a chain of nodes (low-rank, Kronecker) keeps the rest of
 * what a Gemm computes, α·(x·W) + β·C: the chain writes `product`, and these nodes scale it and add
 * the bias into the layer's output. For MatMul the chain writes the layer's output directly.
 */
export function gemmEpilogue(model: Model, layer: LinearLayer, base: string): { product: string; nodes: NodeProto[] } {
  if (layer.kind !== 'gemm') return { product: layer.output, nodes: [] };
  const alpha = attrFloat(layer.node, 'alpha', 1);
  const c = layer.node.input?.[2];
  if (c && !layer.bias) throw new UserError(`'${layer.name}': Gemm adds a computed tensor '${c}'; only constant biases can be carried over`);
  const nodes: NodeProto[] = [];
  const steps: [string, (from: string, to: string) => NodeProto][] = [];
  if (alpha !== 1) {
    const a = addConstant(model, `${layer.name}.alpha`, DataType.FLOAT, [], [alpha]);
    steps.push(['scaled', (from, to) => makeNode('Mul', [from, a], [to], `${base}/Mul_alpha`)]);
  }
  if (layer.bias) {
    const t = model.tensor(layer.bias);
    const beta = attrFloat(layer.node, 'beta', 1);
    const bias = beta === 1 ? layer.bias : addConstant(model, `${layer.name}.bias`, DataType.FLOAT, t.dims, toFloat32(t.dataType, t.data, t.dims.reduce((x, y) => x * y, 1)).map((v) => v * beta));
    steps.push(['biased', (from, to) => makeNode('Add', [from, bias], [to], `${base}/Add_bias`)]);
  }
  const product = steps.length > 0 ? `${base}/product` : layer.output;
  let from = product;
  steps.forEach(([name, make], i) => {
    const to = i === steps.length - 1 ? layer.output : `${base}/${name}`;
    nodes.push(make(from, to));
    from = to;
  });
  return { product, nodes };
}
