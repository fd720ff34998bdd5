import { UserError } from '../errors.js';
import { DataType } from './dtype.js';
import { attrFloat, makeNode } from './graph.js';
import { addConstant } from './linear-weights.js';
import type { LinearLayer } from './linears.js';
import type { Model } from './model.js';
import type { NodeProto } from './onnx-schema.js';
import { toFloat32 } from './pack.js';

/**
 * A Gemm's β·C as one float32 [N] initializer (C itself when already so): what a rewrite that
 * replaces the Gemm must add after its product. Undefined when the Gemm has no C.
 */
export function gemmBiasVector(model: Model, layer: LinearLayer, rewrite: string): string | undefined {
  const c = layer.node.input?.[2];
  if (!c) return undefined;
  if (!layer.bias) throw new UserError(`${rewrite}: Gemm '${layer.name}' adds a computed tensor '${c}', not a constant bias`);
  const t = model.tensor(layer.bias);
  const count = t.dims.reduce((a, b) => a * b, 1);
  if (count !== layer.outFeatures) throw new UserError(`${rewrite}: Gemm '${layer.name}' bias has shape [${t.dims.join(', ')}]; a bias of [${layer.outFeatures}] is needed`);
  const beta = attrFloat(layer.node, 'beta', 1);
  if (beta === 1 && t.dims.length === 1 && t.dataType === DataType.FLOAT) return layer.bias;
  return addConstant(model, `${layer.name}.bias`, DataType.FLOAT, [count], toFloat32(t.dataType, t.data, count).map((v) => v * beta));
}

/**
 * A rewrite that replaces a layer's x·W by a chain of nodes (low-rank, Kronecker) keeps the rest of
 * what a Gemm computes, α·(x·W) + β·C: the chain writes `product`, and these nodes scale it and add
 * the bias into the layer's output. For MatMul the chain writes the layer's output directly.
 */
export function gemmEpilogue(model: Model, layer: LinearLayer, base: string, rewrite: string): { product: string; nodes: NodeProto[] } {
  if (layer.kind !== 'gemm') return { product: layer.output, nodes: [] };
  const steps: [string, (from: string, to: string) => NodeProto][] = [];
  const alpha = attrFloat(layer.node, 'alpha', 1);
  if (alpha !== 1) {
    const a = addConstant(model, `${layer.name}.alpha`, DataType.FLOAT, [], [alpha]);
    steps.push(['scaled', (from, to) => makeNode('Mul', [from, a], [to], `${base}/Mul_alpha`)]);
  }
  const bias = gemmBiasVector(model, layer, rewrite);
  if (bias) steps.push(['biased', (from, to) => makeNode('Add', [from, bias], [to], `${base}/Add_bias`)]);
  const product = steps.length > 0 ? `${base}/product` : layer.output;
  const nodes: NodeProto[] = [];
  let from = product;
  steps.forEach(([name, make], i) => {
    const to = i === steps.length - 1 ? layer.output : `${base}/${name}`;
    nodes.push(make(from, to));
    from = to;
  });
  return { product, nodes };
}
