import { DataType } from '../model/dtype.js';
import { GraphIndex } from '../model/graph.js';
import { linears, type LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { matMulNBitsLayers } from '../model/nbits-layers.js';
import { int64ToNumber } from '../model/onnx-schema.js';
import type * as tfjs from '@tensorflow/tfjs';
import type { OnnxExecutor } from '../runtime/tfjs/executor.js';
import type { LayerStat, PassContext } from '../pass/pass.js';

const MATMUL_LIKE = new Set(['MatMul', 'Gemm', 'Conv', 'MatMulNBits']);
const CHAIN = new Set(['Transpose', 'Reshape', 'DequantizeLinear', 'Cast']);
const FLOATS = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16]);
const CODES = new Set<number>([DataType.INT8, DataType.UINT8, DataType.INT4, DataType.UINT4]);

/**
 * The initializers distillation trains: the weights and biases of the selected layers (a
 * MatMulNBits layer's packed codes train through fake quantization), plus every other weight operand
 * of a matmul-like node that is no layer — the factors a decomposition wrote (a Kronecker A_r sits on
 * the left of its MatMul). Layers the targets left out stay frozen.
 */
export function trainableInitializers(model: Model, selected: readonly LinearLayer[]): Set<string> {
  const names = new Set<string>();
  const all = [...linears(model), ...matMulNBitsLayers(model)];
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

/**
 * Zeros to keep: for float weights every exact zero (a dense trained weight has essentially none, a
 * pruned one its mask); for fake-quantized weights only when at least 40 % are zero, since rounding
 * alone puts some small weights on the zero code and those must stay free to move.
 */
export function pruningMasks(exec: OnnxExecutor, model: Model): Map<string, tfjs.Tensor> {
  const tf = exec.tf;
  const masks = new Map<string, tfjs.Tensor>();
  for (const [name, v] of exec.variables) {
    const data = v.dataSync();
    let zeros = 0;
    for (let i = 0; i < data.length; i++) if (data[i] === 0) zeros++;
    const quantized = !isFloatInitializer(model, name);
    if (zeros === 0 || (quantized && zeros < 0.4 * data.length)) continue;
    masks.set(name, tf.tidy(() => tf.cast(tf.notEqual(v, 0), 'float32')));
  }
  return masks;
}

/**
 * The peak learning rate when params.lr is absent, chosen by the sweep in bench/RESULTS.md
 * (stories260K, 150 steps, cosine, warm-up 20): a student with quantized codes, which trains through
 * fake quantization, did best at 1e-3 (2e-3 and 3e-4 lost); a float one (pruned, factorized) at
 * 2e-3 (1e-3 and 3e-4 lost, 3e-3 tied).
 */
export function defaultLearningRate(model: Model, trained: Iterable<string>): number {
  for (const name of trained) if (!isFloatInitializer(model, name)) return 1e-3;
  return 2e-3;
}

function isFloatInitializer(model: Model, name: string): boolean {
  const dt = model.graph.initializer?.find((t) => t.name === name)?.data_type;
  return dt === DataType.FLOAT || dt === DataType.FLOAT16 || dt === DataType.BFLOAT16;
}

/** One row per trained tensor: bytes unchanged (shapes and dtypes are kept), sparsity after training. */
export function layerStats(model: Model, names: Set<string>, ctx: PassContext): LayerStat[] {
  const stats: LayerStat[] = [];
  for (const name of names) {
    const t = model.tensor(name);
    const layer = ctx.layers.find((l) => l.weight === name || l.bias === name);
    const floats = t.dataType === 1 ? new Float32Array(t.data.slice().buffer) : undefined;
    let zeros = 0;
    if (floats) for (const x of floats) if (x === 0) zeros++;
    stats.push({
      name: layer ? (layer.bias === name ? `${layer.name}.bias` : layer.name) : name,
      kind: layer?.kind,
      shape: t.dims,
      ms: 0,
      bytes_before: t.data.byteLength,
      bytes_after: t.data.byteLength,
      ...(floats ? { sparsity: zeros / floats.length } : {}),
    });
  }
  return stats;
}
