import { attrInt } from './graph.js';
import { canonicalLayerName, type LinearLayer } from './linears.js';
import type { Model } from './model.js';

/**
 * The linear layers a block-quantized model computes with com.microsoft.MatMulNBits, as LinearLayers
 * whose weight is the packed code initializer B (weightShape [K, N], as a MatMul holds it). Named as
 * the layer they replaced (`/layers.0/mlp/down_proj/MatMul/MatMulNBits` -> `layers.0.mlp.down_proj`),
 * so a recipe selects them with the targets it used to quantize them. Only passes that train codes
 * (distill.kd, quantize.reconstruct, through fake quantization) select among these. B may be computed
 * by a constant sub-graph (packed_3bit's unpacking chain); `weight` is then that computed value.
 */
export function matMulNBitsLayers(model: Model): LinearLayer[] {
  const out: LinearLayer[] = [];
  for (const node of model.graph.node ?? []) {
    if (node.op_type !== 'MatMulNBits') continue;
    const ins = node.input ?? [];
    const weight = ins[1] ?? '';
    if (!weight) continue;
    const K = attrInt(node, 'K', 0);
    const N = attrInt(node, 'N', 0);
    const bias = ins[5] && model.hasInitializer(ins[5]) ? ins[5] : undefined;
    out.push({
      name: canonicalLayerName((node.name ?? '').replace(/\/MatMulNBits$/, ''), weight.replace(/\.weight_q\d+$/, '.weight')),
      kind: 'matmul',
      node,
      weight,
      weightChain: [],
      weightShape: [K, N],
      inFeatures: K,
      outFeatures: N,
      ...(bias ? { bias } : {}),
      input: ins[0] ?? '',
      output: node.output?.[0] ?? '',
    });
  }
  return out;
}
