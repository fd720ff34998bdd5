import { UserError } from '../errors.js';
import { DataType } from './dtype.js';
import { attrInt, attrInts } from './graph.js';
import type { LinearLayer } from './linears.js';
import type { Model } from './model.js';
import { permute, transpose2d } from './ndarray.js';
import type { NodeProto } from './onnx-schema.js';
import { toFloat32, unpackUint4 } from './pack.js';
import type { SafetensorsTensor } from './safetensors.js';

/**
 * Quantized linear weights in safetensors, in compressed-tensors' naming (docs/safetensors-layout.md):
 * `<m>.weight` int8 [out, in] signed codes (int-quantized) or `<m>.weight_packed` int32 [out, in/8]
 * with eight 4-bit codes per word, offset by 8, first code in the lowest bits (pack-quantized), plus
 * `<m>.weight_shape` int64 [2]; `<m>.weight_scale` float32 [1] / [out, 1] / [out, in/group];
 * `<m>.weight_zero_point` int8 of the scale's shape when asymmetric. w = scale · (code − zero_point).
 * Channel and tensor strategies are rebuilt as DequantizeLinear, group strategy as MatMulNBits,
 * which are the two forms pare's quantizers emit.
 */

export type Strategy = 'tensor' | 'channel' | 'group';

export interface QuantScheme {
  num_bits: 4 | 8;
  symmetric: boolean;
  strategy: Strategy;
  /** inputs per group; group strategy only */
  group_size?: number;
  format: 'int-quantized' | 'pack-quantized';
  /** MatMulNBits accuracy_level (group strategy only) */
  accuracy_level?: number;
}

export interface QuantizedWeight {
  scheme: QuantScheme;
  rows: number;
  cols: number;
  /** signed codes [rows, cols] (int-quantized), or the packed bytes [rows, cols/2] (pack-quantized) */
  codes: Int8Array | Uint8Array;
  /** [rows, groups] (tensor: one value) */
  scales: Float32Array;
  /** signed zero points like scales, asymmetric only */
  zeros?: Int8Array;
}

const SUFFIXES = ['weight', 'weight_packed', 'weight_shape', 'weight_scale', 'weight_zero_point'] as const;

/** Whether a checkpoint stores module `m` quantized. */
export function isQuantizedModule(has: (name: string) => boolean, m: string): boolean {
  return has(`${m}.weight_scale`);
}

export function schemeKey(s: QuantScheme): string {
  return JSON.stringify([s.format, s.num_bits, s.symmetric, s.strategy, s.group_size ?? null, s.accuracy_level ?? 0]);
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** The safetensors tensors of one quantized module `m`. */
export function quantizedTensors(m: string, q: QuantizedWeight): (SafetensorsTensor & { data: Uint8Array })[] {
  const groups = q.scales.length / q.rows;
  const scaleShape = q.scheme.strategy === 'tensor' ? [1] : [q.rows, groups];
  const out: (SafetensorsTensor & { data: Uint8Array })[] = [];
  if (q.scheme.format === 'pack-quantized') {
    out.push({ name: `${m}.weight_packed`, dataType: DataType.INT32, shape: [q.rows, q.cols / 8], data: bytesOf(q.codes) });
    out.push({ name: `${m}.weight_shape`, dataType: DataType.INT64, shape: [2], data: bytesOf(BigInt64Array.of(BigInt(q.rows), BigInt(q.cols))) });
  } else {
    out.push({ name: `${m}.weight`, dataType: DataType.INT8, shape: [q.rows, q.cols], data: bytesOf(q.codes) });
  }
  out.push({ name: `${m}.weight_scale`, dataType: DataType.FLOAT, shape: scaleShape, data: bytesOf(q.scales) });
  if (q.zeros) out.push({ name: `${m}.weight_zero_point`, dataType: DataType.INT8, shape: scaleShape, data: bytesOf(q.zeros) });
  return out;
}

/** Tensor names a quantized module may own (for telling them from the float `<m>.weight`). */
export function quantizedTensorNames(m: string): string[] {
  return SUFFIXES.map((s) => `${m}.${s}`);
}

/**
 * The quantized weight of a projection in the graph: a MatMul fed by DequantizeLinear (through
 * Transposes) or a com.microsoft MatMulNBits. Returns undefined for a float weight; throws a
 * UserError (via `cannot`) for a quantized form this layout does not hold.
 */
export function quantizedFromGraph(model: Model, node: NodeProto, layer: LinearLayer | undefined, cannot: (what: string) => Error): QuantizedWeight | undefined {
  if (node.op_type === 'MatMulNBits') return fromMatMulNBits(model, node, cannot);
  if (!layer || !layer.weightChain.some((n) => n.op_type === 'DequantizeLinear')) return undefined;
  return fromDequantizeLinear(model, layer, cannot);
}

function fromDequantizeLinear(model: Model, layer: LinearLayer, cannot: (what: string) => Error): QuantizedWeight {
  if (layer.kind !== 'matmul') throw cannot(`'${layer.name}' is a quantized ${layer.kind}`);
  const dqs = layer.weightChain.filter((n) => n.op_type === 'DequantizeLinear');
  if (dqs.length !== 1 || layer.weightChain.some((n) => n.op_type !== 'DequantizeLinear' && n.op_type !== 'Transpose')) {
    throw cannot(`'${layer.name}' reads its weight through ${layer.weightChain.map((n) => n.op_type).join(' → ')}`);
  }
  const dq = dqs[0]!;
  if (attrInt(dq, 'block_size', 0) !== 0) throw cannot(`'${layer.name}' uses blocked DequantizeLinear`);
  const t = model.tensor(layer.weight);
  if (t.dataType !== DataType.INT8 && t.dataType !== DataType.UINT8) throw cannot(`'${layer.name}' has ${t.dataType === DataType.INT4 || t.dataType === DataType.UINT4 ? '4-bit' : 'non-8-bit'} DequantizeLinear codes`);
  const offset = t.dataType === DataType.UINT8 ? 128 : 0;
  let data = toFloat32(t.dataType, t.data);
  let shape = t.dims;
  // follow the per-channel axis through the chain's transposes to the consumed [in, out] layout
  let axis = -1;
  for (const n of layer.weightChain) {
    if (n.op_type === 'Transpose') {
      const perm = attrInts(n, 'perm') ?? shape.map((_, i) => shape.length - 1 - i);
      ({ data, shape } = permute(data, shape, perm));
      if (axis >= 0) axis = perm.indexOf(axis);
    } else {
      axis = (attrInt(n, 'axis', 1) + shape.length) % shape.length;
    }
  }
  const [cols, rows] = shape as [number, number];
  const scale = model.tensor(dq.input![1]!);
  const perTensor = scale.dims.reduce((a, b) => a * b, 1) === 1;
  if (!perTensor && axis !== 1) throw cannot(`'${layer.name}' has DequantizeLinear scales along its input dimension`);
  const scales = toFloat32(scale.dataType, scale.data);
  if (scale.dataType !== DataType.FLOAT) throw cannot(`'${layer.name}' has non-float32 quantization scales`);
  const zp = dq.input![2] ? model.tensor(dq.input![2]) : undefined;
  const zeroValues = zp ? toFloat32(zp.dataType, zp.data).map((z) => z - offset) : undefined;
  const symmetric = offset === 0 && (!zeroValues || zeroValues.every((z) => z === 0));
  const codes = Int8Array.from(transpose2d(data, cols, rows), (c) => c - offset);
  return {
    scheme: { num_bits: 8, symmetric, strategy: perTensor ? 'tensor' : 'channel', format: 'int-quantized' },
    rows,
    cols,
    codes,
    scales: Float32Array.from(scales),
    zeros: symmetric ? undefined : zeroValues ? Int8Array.from(zeroValues) : new Int8Array(scales.length).fill(-offset),
  };
}

function fromMatMulNBits(model: Model, node: NodeProto, cannot: (what: string) => Error): QuantizedWeight {
  const inputs = node.input ?? [];
  const name = node.name ?? '';
  if (inputs.length < 3 || inputs.slice(1).some((x) => x && !model.hasInitializer(x))) throw cannot(`node '${name}' is a MatMulNBits without constant weights`);
  if (inputs.length > 4 && inputs.slice(4).some((x) => x)) throw cannot(`node '${name}' is a MatMulNBits with g_idx or bias inputs`);
  const [N, K, bits, block] = ['N', 'K', 'bits', 'block_size'].map((a) => attrInt(node, a, 0)) as [number, number, number, number];
  if (bits !== 4 && bits !== 8) throw cannot(`node '${name}' is a ${bits}-bit MatMulNBits`);
  if (K % block !== 0 || K % 8 !== 0) throw cannot(`node '${name}' has K ${K} not a multiple of its block ${block}`);
  const kBlocks = K / block;
  const B = model.tensor(inputs[1]!);
  const scale = model.tensor(inputs[2]!);
  if (scale.dataType !== DataType.FLOAT) throw cannot(`node '${name}' has non-float32 scales`);
  const scales = toFloat32(scale.dataType, scale.data);
  const half = 2 ** (bits - 1);
  let zeros: Int8Array | undefined;
  if (inputs[3]) {
    const zp = model.tensor(inputs[3]);
    if (zp.dataType !== DataType.UINT8) throw cannot(`node '${name}' has float zero points`);
    const perRow = Math.ceil((kBlocks * bits) / 8);
    zeros = new Int8Array(N * kBlocks);
    for (let n = 0; n < N; n++) {
      const row = zp.data.subarray(n * perRow, (n + 1) * perRow);
      const z = bits === 8 ? row : unpackUint4(row, kBlocks);
      for (let k = 0; k < kBlocks; k++) zeros[n * kBlocks + k] = z[k]! - half;
    }
  }
  const codes = bits === 4 ? B.data.slice() : Int8Array.from(B.data, (c) => c - half);
  return {
    scheme: { num_bits: bits, symmetric: !zeros, strategy: 'group', group_size: block, format: bits === 4 ? 'pack-quantized' : 'int-quantized', accuracy_level: attrInt(node, 'accuracy_level', 0) },
    rows: N,
    cols: K,
    codes,
    scales: Float32Array.from(scales),
    zeros,
  };
}

/** config.json `quantization_config` for the quantized modules, one config group per scheme. */
export function quantizationConfig(modules: ReadonlyMap<string, QuantScheme>): Record<string, unknown> {
  const groups = new Map<string, { scheme: QuantScheme; targets: string[] }>();
  for (const [m, s] of modules) {
    const key = schemeKey(s);
    if (!groups.has(key)) groups.set(key, { scheme: s, targets: [] });
    groups.get(key)!.targets.push(m);
  }
  const formats = new Set([...groups.values()].map((g) => g.scheme.format));
  return {
    quant_method: 'pare',
    version: 1,
    format: formats.size === 1 ? [...formats][0] : 'mixed-precision',
    config_groups: Object.fromEntries(
      [...groups.values()].map((g, i) => {
        const { format, accuracy_level, ...w } = g.scheme;
        const weights = { num_bits: w.num_bits, type: 'int', symmetric: w.symmetric, strategy: w.strategy, group_size: w.group_size ?? null };
        return [`group_${i}`, { targets: g.targets, format, weights, ...(accuracy_level ? { accuracy_level } : {}) }];
      }),
    ),
  };
}

/** module name → scheme, from config.json's quantization_config (absent: none quantized). */
export function readQuantizationConfig(config: Record<string, unknown>, configPath: string): Map<string, QuantScheme> {
  const out = new Map<string, QuantScheme>();
  const qc = config.quantization_config as Record<string, unknown> | undefined;
  if (qc === undefined) return out;
  const bad = (what: string) => new UserError(`${configPath}: quantization_config ${what} (see docs/safetensors-layout.md)`);
  if (typeof qc !== 'object' || qc === null || qc.quant_method !== 'pare') throw bad(`quant_method ${JSON.stringify((qc as Record<string, unknown> | null)?.quant_method)} is not supported; pare reads its own layout ("pare")`);
  for (const [id, raw] of Object.entries((qc.config_groups ?? {}) as Record<string, Record<string, unknown>>)) {
    const w = (raw.weights ?? {}) as Record<string, unknown>;
    const scheme: QuantScheme = {
      num_bits: w.num_bits as 4 | 8,
      symmetric: w.symmetric as boolean,
      strategy: w.strategy as Strategy,
      format: raw.format as QuantScheme['format'],
      ...(typeof w.group_size === 'number' ? { group_size: w.group_size } : {}),
      ...(typeof raw.accuracy_level === 'number' ? { accuracy_level: raw.accuracy_level } : {}),
    };
    const valid =
      (scheme.num_bits === 8 && scheme.format === 'int-quantized') || (scheme.num_bits === 4 && scheme.format === 'pack-quantized' && scheme.strategy === 'group');
    if (!valid || typeof scheme.symmetric !== 'boolean' || !['tensor', 'channel', 'group'].includes(scheme.strategy) || (scheme.strategy === 'group') !== (scheme.group_size !== undefined)) {
      throw bad(`config_groups.${id}: unsupported ${JSON.stringify(raw)}`);
    }
    if (!Array.isArray(raw.targets)) throw bad(`config_groups.${id}.targets must be a list of module names`);
    for (const m of raw.targets) out.set(String(m), scheme);
  }
  return out;
}
