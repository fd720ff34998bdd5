import { DataType } from '../model/dtype.js';
import { GraphIndex } from '../model/graph.js';
import { linears, type LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { int64ToNumber } from '../model/onnx-schema.js';

const MATMUL_LIKE = new Set(['MatMul', 'Gemm', 'Conv', 'MatMulNBits']);
const CHAIN = new Set(['Transpose', 'Reshape', 'DequantizeLinear', 'Cast']);
const FLOATS = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16]);
const CODES = new Set<number>([DataType.INT8, DataType.UINT8, DataType.INT4, DataType.UINT4]);

/**
 * The initializers distillation trains: the weights and biases of the selected linear layers, plus
 * every other weight operand of a matmul-like node that is not an ordinary linear layer — the
 * factors a decomposition wrote (a Kronecker A_r sits on the left of its MatMul) and MatMulNBits'
 * packed codes (trained through fake quantization). Linears the targets left out stay frozen.
 */
export function trainableInitializers(model: Model, selected: readonly LinearLayer[]): Set<string> {
  const names = new Set<string>();
  const all = linears(model);
  const frozen = new Set(all.map((l) => l.weight));
  for (const l of selected) {
    names.add(l.weight);
    frozen.delete(l.weight);
    if (l.bias) names.add(l.bias);
  }
  const index = new GraphIndex(model.graph);
  const isInit = (n: string) => model.hasInitializer(n);
  const root = (tensor: string): string | undefined => {
    for (let t = tensor, hops = 0; hops < 8; hops++) {
      if (isInit(t)) return t;
      const p = index.producer.get(t);
      if (!p || !CHAIN.has(p.op_type ?? '')) return undefined;
      t = p.input?.[0] ?? '';
    }
    return undefined;
  };
  for (const node of model.graph.node ?? []) {
    if (!MATMUL_LIKE.has(node.op_type ?? '')) continue;
    const operands = node.op_type === 'MatMul' ? (node.input ?? []).slice(0, 2) : (node.input ?? []).slice(1, 2);
    for (const x of operands) {
      const init = x ? root(x) : undefined;
      if (!init || frozen.has(init) || names.has(init)) continue;
      const t = model.graph.initializer!.find((i) => i.name === init)!;
      const dims = (t.dims ?? []).map(int64ToNumber);
      const dt = t.data_type ?? 0;
      if (dims.length >= 2 && (FLOATS.has(dt) || CODES.has(dt))) names.add(init);
    }
  }
  return names;
}
