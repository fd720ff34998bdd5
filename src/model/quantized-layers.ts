import { DataType, dtypeName } from './dtype.js';
import { GraphIndex } from './graph.js';
import { canonicalLayerName } from './linears.js';
import type { Model } from './model.js';
import type { NodeProto } from './onnx-schema.js';

/**
 * Layers an already-quantized model computes in integers: QOperator nodes (QLinearConv,
 * QLinearMatMul: int8/uint8 weights, their scales and zero points as inputs, QLinearConv's bias as
 * int32) and QDQ layers (a Conv, Gemm or MatMul whose weight comes through a DequantizeLinear).
 * `inspect` lists them, size.ts counts their weights and biases (not their scales and zero points),
 * and passes that need float weights name the first one's op when they refuse.
 */
export interface QuantizedLayer {
  name: string;
  /** QLinearConv, QLinearMatMul, or the float op of a QDQ layer (`Conv (QDQ)`) */
  op: string;
  node: NodeProto;
  /** the integer weight initializer */
  weight: string;
  dtype: string;
  /** [out, in] (Conv: [out, in/g·kh·kw]) */
  shape: [number, number];
  /** the weight's scale has one value per output channel */
  perChannel: boolean;
  bias?: string;
}

/** Quantization parameter inputs (scales, zero points) of the QOperator ops, by op. */
export const QOPERATOR_PARAM_INPUTS: Record<string, number[]> = {
  QLinearConv: [1, 2, 4, 5, 6, 7],
  QLinearMatMul: [1, 2, 4, 5, 6, 7],
  QLinearAdd: [1, 2, 4, 5, 6, 7],
  QLinearMul: [1, 2, 4, 5, 6, 7],
  QLinearGlobalAveragePool: [1, 2, 3, 4],
  QLinearAveragePool: [1, 2, 3, 4],
  QLinearSigmoid: [1, 2, 3, 4],
  QLinearLeakyRelu: [1, 2, 3, 4],
  ConvInteger: [2, 3],
};

const QOPERATOR_LAYERS: Record<string, { weight: number; weightScale: number; bias?: number }> = {
  QLinearConv: { weight: 3, weightScale: 4, bias: 8 },
  QLinearMatMul: { weight: 3, weightScale: 4 },
};

export function quantizedLayers(model: Model): QuantizedLayer[] {
  const index = new GraphIndex(model.graph);
  const found: QuantizedLayer[] = [];
  const dims = (name: string) => (model.hasInitializer(name) ? model.tensor(name).dims : undefined);
  for (const node of model.graph.node ?? []) {
    const op = node.op_type ?? '';
    const q = QOPERATOR_LAYERS[op];
    const ins = node.input ?? [];
    if (q) {
      const w = ins[q.weight] ?? '';
      const d = dims(w);
      if (!d) continue;
      const shape: [number, number] = op === 'QLinearConv' ? [d[0]!, d.slice(1).reduce((a, b) => a * b, 1)] : [d[1]!, d[0]!];
      const scale = dims(ins[q.weightScale] ?? '') ?? [];
      const bias = q.bias !== undefined && ins[q.bias] ? ins[q.bias] : undefined;
      found.push({ name: canonicalLayerName(node.name ?? '', w), op, node, weight: w, dtype: dtypeName(model.initializer(w)!.data_type ?? 0), shape, perChannel: scale.length === 1 && scale[0]! > 1, bias });
      continue;
    }
    if (op !== 'Conv' && op !== 'MatMul' && op !== 'Gemm') continue;
    const dq = index.producer.get(ins[1] ?? '');
    if (dq?.op_type !== 'DequantizeLinear' || !model.hasInitializer(dq.input?.[0] ?? '')) continue;
    const w = dq.input![0]!;
    const d = dims(w)!;
    const shape: [number, number] = op === 'Conv' ? [d[0]!, d.slice(1).reduce((a, b) => a * b, 1)] : [d[1]!, d[0]!];
    const scale = dims(dq.input![1] ?? '') ?? [];
    const biasDq = index.producer.get(ins[2] ?? '');
    const bias = biasDq?.op_type === 'DequantizeLinear' ? biasDq.input?.[0] : ins[2] || undefined;
    found.push({ name: canonicalLayerName(node.name ?? '', w), op: `${op} (QDQ)`, node, weight: w, dtype: dtypeName(model.initializer(w)!.data_type ?? 0), shape, perChannel: scale.length === 1 && scale[0]! > 1, bias });
  }
  return found;
}

/** Int32 initializers that hold quantized biases: QLinearConv's bias and DequantizeLinear inputs of type int32. */
export function quantizedBiases(model: Model): Set<string> {
  const out = new Set<string>();
  for (const n of model.graph.node ?? []) {
    const b = n.op_type === 'QLinearConv' ? n.input?.[8] : n.op_type === 'DequantizeLinear' ? n.input?.[0] : undefined;
    if (b && model.initializer(b)?.data_type === DataType.INT32) out.add(b);
  }
  return out;
}

/** The QOperator op of the first integer layer, when the model has one (passes that need float weights name it). */
export function qoperatorOp(model: Model): string | undefined {
  return (model.graph.node ?? []).find((n) => QOPERATOR_LAYERS[n.op_type ?? ''])?.op_type ?? undefined;
}
