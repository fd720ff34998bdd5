import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { dtypeBits, dtypeName, elementCount, DataType } from './dtype.js';
import { attrInt, GraphIndex } from './graph.js';
import type { Model } from './model.js';
import { int64ToNumber, type TensorProto } from './onnx-schema.js';
import { toFloat32 } from './pack.js';
import { QOPERATOR_PARAM_INPUTS, quantizedBiases } from './quantized-layers.js';

export interface SizeStats {
  /** the .onnx or .safetensors file plus every external data file it names */
  file_bytes: number;
  /** weight elements: float and quantized initializers, each stored tensor once (see `countsAsWeight`) */
  params: number;
  bytes_by_dtype: Record<string, number>;
  params_by_dtype: Record<string, number>;
  nonzeros: number;
  /** what the weights would take as a bitmask plus their nonzero values (ONNX Runtime stores them dense) */
  sparse_bytes: number;
  /** all initializer bytes (weights, scales, zero points) · 8 / params */
  bits_per_weight: number;
}

const QUANT_PARAM_INPUTS: Record<string, number[]> = {
  DequantizeLinear: [1, 2],
  QuantizeLinear: [1, 2],
  MatMulNBits: [2, 3, 4],
  GatherBlockQuantized: [1, 2, 3],
  MatMulInteger: [2, 3],
  DynamicQuantizeMatMul: [2, 3],
  ...QOPERATOR_PARAM_INPUTS,
};

/** ops of the constant subgraphs quantize/emit.ts puts before MatMulNBits' inputs */
const CONSTANT_CHAIN = new Set(['Cast', 'MatMul', 'Div', 'Mod', 'Add', 'Reshape']);

const WEIGHT_TYPES = new Set<number>([
  DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE,
  DataType.INT8, DataType.UINT8, DataType.INT4, DataType.UINT4,
]);

/** Sizes of a model as stored. Parameter rule: every float or quantized initializer counts, except
 * quantization scales/zero points and integer index/shape tensors (the int32 biases of quantized layers count); MatMulNBits' packed B counts as K·N, GatherBlockQuantized's codes as the values they hold. */
export function modelSize(model: Model, files: string[] = [model.path], opts: { readWeights?: boolean } = {}): SizeStats {
  const index = new GraphIndex(model.graph);
  const quantParams = new Set<string>();
  const logicalCount = new Map<string, number>();
  // MatMulNBits' stored tensor behind a constant chain (float16 scales → Cast, packed 3-bit codes → unpacking) counts as the input it feeds
  const source = (name: string): string => {
    let at = name;
    for (let p = index.producer.get(at); p && CONSTANT_CHAIN.has(p.op_type ?? '') && p.input?.[0] && p.input.slice(1).every((i) => !i || model.hasInitializer(i)); p = index.producer.get(at)) at = p.input[0];
    return model.hasInitializer(at) ? at : name;
  };
  for (const n of model.graph.node ?? []) {
    for (const i of QUANT_PARAM_INPUTS[n.op_type ?? ''] ?? []) if (n.input?.[i]) quantParams.add(n.op_type === 'MatMulNBits' ? source(n.input[i]) : n.input[i]);
    if (n.op_type === 'MatMulNBits' && n.input?.[1]) logicalCount.set(source(n.input[1]), attrInt(n, 'K', 0) * attrInt(n, 'N', 0));
    if (n.op_type === 'Gather' && n.input?.[1]) quantParams.add(n.input[1]);
    // quantize.trellis (quantize/trellis-onnx.ts): a stream gathered through the shared byte windows of N states holds N weights; its column exponents are scales
    const trellis = n.op_type === 'Gather' && n.input?.[0] ? /^pare\.trellis\.(window_N(\d+)_k\d+|nibble_byte_c\d+)$/.exec(n.input[1] ?? '') : null;
    if (trellis?.[2]) logicalCount.set(n.input![0]!, Number(trellis[2]));
    else if (trellis) quantParams.add(n.input![0]!);
    // uint8 codes [rows, cols·bits/8] hold rows × cols values
    if (n.op_type === 'GatherBlockQuantized' && n.input?.[0] && model.hasInitializer(n.input[0])) {
      const dims = (model.initializer(n.input[0])!.dims ?? []).map(int64ToNumber);
      logicalCount.set(n.input[0], (elementCount(dims) * 8) / attrInt(n, 'bits', 4));
    }
  }
  const biases = quantizedBiases(model);
  const stats: SizeStats = { file_bytes: fileBytes(model, files), params: 0, bytes_by_dtype: {}, params_by_dtype: {}, nonzeros: 0, sparse_bytes: 0, bits_per_weight: 0 };
  let allBytes = 0;
  for (const t of model.graph.initializer ?? []) {
    const dt = t.data_type ?? 0;
    const count = elementCount((t.dims ?? []).map(int64ToNumber));
    const bytes = Math.ceil((count * dtypeBits(dt)) / 8);
    const name = dtypeName(dt);
    stats.bytes_by_dtype[name] = (stats.bytes_by_dtype[name] ?? 0) + bytes;
    allBytes += bytes;
    if (!(countsAsWeight(t, quantParams) || biases.has(t.name ?? '')) || index.consumerCount(t.name ?? '') === 0) continue;
    const logical = logicalCount.get(t.name ?? '') ?? count;
    stats.params += logical;
    stats.params_by_dtype[name] = (stats.params_by_dtype[name] ?? 0) + logical;
    // without reading weights every element counts as nonzero
    const nz = logicalCount.has(t.name ?? '') || opts.readWeights === false ? logical : countNonzeros(model, t, count);
    stats.nonzeros += nz;
    stats.sparse_bytes += Math.ceil(logical / 8) + Math.ceil((nz * dtypeBits(dt)) / 8);
  }
  stats.bits_per_weight = stats.params ? (allBytes * 8) / stats.params : 0;
  return stats;
}

function countsAsWeight(t: TensorProto, quantParams: Set<string>): boolean {
  // pare.trellis.*: the trellis decoder's shared constants (index grids, the exponent table), no weights
  return WEIGHT_TYPES.has(t.data_type ?? 0) && !quantParams.has(t.name ?? '') && (t.dims?.length ?? 0) >= 1 && !(t.name ?? '').startsWith('pare.trellis.');
}

function countNonzeros(model: Model, t: TensorProto, count: number): number {
  const values = toFloat32(t.data_type ?? 0, model.tensor(t).data, count);
  let nz = 0;
  for (let i = 0; i < values.length; i++) if (values[i] !== 0) nz++;
  return nz;
}

/** The model file plus the distinct external data files its tensors name (a safetensors model's own file among them). */
export function fileBytes(model: Model, files: string[] = [model.path]): number {
  const all = new Set(files.map((f) => resolve(f)));
  for (const t of model.graph.initializer ?? []) {
    if (t.data_location !== 1) continue;
    const loc = t.external_data?.find((e) => e.key === 'location')?.value;
    if (loc) all.add(resolve(model.dir, loc));
  }
  let total = 0;
  for (const f of all) {
    try {
      total += statSync(f).size;
    } catch {
      // a model built in memory has no file yet
    }
  }
  return total;
}
