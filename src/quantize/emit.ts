import { UserError } from '../errors.js';
import { DataType } from '../model/dtype.js';
import { attr, attrFloat, attrInt, makeNode } from '../model/graph.js';
import { insertBefore, replaceNode } from '../model/graph-edit.js';
import { addConstant, removeUnused, uniqueInitializerName } from '../model/linear-weights.js';
import { gemmBiasVector } from '../model/gemm-epilogue.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { transpose2d } from '../model/ndarray.js';
import type { NodeProto } from '../model/onnx-schema.js';
import { float32ToFloat16, packInt4, packUint2, packUint4 } from '../model/pack.js';
import { groupCount, type QuantizedMatrix, type ScaleDtype } from './grid.js';
import { mergedBias } from './bias-correction.js';
import { unpack3Nodes } from './pack3.js';

/**
 * Graph rewrites that store a quantized weight in a form ONNX Runtime executes natively, so the
 * file really shrinks. Both compute exactly scale · (q − zero) in float32, the values
 * `dequantizeMatrix` returns.
 */

export const MS_DOMAIN = 'com.microsoft';

/** MatMulNBits' code width for a grid: 8, 4 or 2 bits (ONNX Runtime's CPU kernel has no 3-bit form). */
export function matMulNBitsContainer(bits: number): 8 | 4 | 2 {
  return bits === 8 ? 8 : bits === 2 ? 2 : 4;
}

export function ensureOpset(model: Model, domain: string, version: number): void {
  const imports = (model.proto.opset_import ??= []);
  if (!imports.some((o) => (o.domain ?? '') === domain)) imports.push({ domain, version });
}

/** q as signed values q − zero (symmetric grids) in the consumed layout of the layer. */
function consumedCodes(layer: LinearLayer, m: QuantizedMatrix, signed: boolean): { data: Int8Array | Uint8Array; axis: number } {
  const codes = signed ? Int8Array.from(m.q, (q) => q - 2 ** (m.bits - 1)) : m.q;
  const outIn = layer.kind === 'matmul' || (layer.kind === 'gemm' && attrInt(layer.node, 'transB', 0) !== 1);
  if (!outIn) return { data: codes, axis: 0 };
  const f = transpose2d(Float32Array.from(codes), m.rows, m.cols);
  return { data: signed ? Int8Array.from(f) : Uint8Array.from(f), axis: 1 };
}

/**
 * DequantizeLinear(q, scale, zero, axis) -> layer      per-channel or per-tensor
 * int8 codes with no zero point for symmetric grids, uint8 codes and zero points otherwise. Grids
 * of fewer than 8 bits are stored in this 8-bit container (exact values, no size gain beyond int8):
 * MatMulNBits is the packed 4-bit form.
 */
export function emitDequantizeLinear(model: Model, layer: LinearLayer, m: QuantizedMatrix): void {
  if (m.groupSize !== m.cols) return emitBlockedDequantizeLinear(model, layer, m);
  const perTensor = m.scales.every((s) => s === m.scales[0]) && m.zeros.every((z) => z === m.zeros[0]);
  // DequantizeLinear came in opset 10 (one scale per tensor); its axis, for one scale per channel, in 13
  if (model.opset() < 10) throw new UserError(`format qdq: ${model.path} imports ONNX opset ${model.opset()}; DequantizeLinear needs opset 10 or newer: add --opset 13 (or output.opset: 13) to upgrade the model first`);
  if (!perTensor && model.opset() < 13) throw new UserError(`format qdq: ${model.path} imports ONNX opset ${model.opset()}; per-channel DequantizeLinear needs opset 13 or newer: add --opset 13 (or output.opset: 13), or use granularity: tensor`);
  const { data, axis } = consumedCodes(layer, m, m.symmetric);
  const base = layer.name;
  const qName = uniqueInitializerName(model, `${base}.weight_quantized`);
  model.setInitializer({ name: qName, dataType: m.symmetric ? DataType.INT8 : DataType.UINT8, dims: layer.weightShape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
  const sName = uniqueInitializerName(model, `${base}.weight_scale`);
  const scales = perTensor ? Float32Array.of(m.scales[0]!) : m.scales;
  model.setInitializer({ name: sName, dataType: DataType.FLOAT, dims: perTensor ? [] : [m.rows], data: new Uint8Array(scales.buffer.slice(scales.byteOffset, scales.byteOffset + scales.byteLength)) });
  const inputs = [qName, sName];
  if (!m.symmetric) {
    const zName = uniqueInitializerName(model, `${base}.weight_zero_point`);
    const zeros = perTensor ? Uint8Array.of(m.zeros[0]!) : m.zeros;
    model.setInitializer({ name: zName, dataType: DataType.UINT8, dims: perTensor ? [] : [m.rows], data: zeros.slice() });
    inputs.push(zName);
  }
  const out = `${base}.weight_dequantized`;
  const dq = makeNode('DequantizeLinear', inputs, [out], `${layer.node.name ?? base}/DequantizeLinear`, perTensor ? [] : [attr.int('axis', axis)]);
  insertBefore(model.graph, layer.node, [dq]);
  layer.node.input![1] = out;
  removeUnused(model);
}

/** The minimum default-domain opset of DequantizeLinear's `block_size` and of int4/uint4 codes. */
export const BLOCKED_DQ_OPSET = 21;

/**
 * DequantizeLinear(q, scale, zero, axis, block_size) -> layer      per group of inputs (opset 21)
 * q in the consumed layout, int4/uint4 (packed) for grids of ≤ 4 bits, else int8/uint8; scale and
 * zero point of q's rank with ⌈K/block⌉ along the input axis (the last block may be shorter).
 */
function emitBlockedDequantizeLinear(model: Model, layer: LinearLayer, m: QuantizedMatrix): void {
  if (layer.kind === 'conv') throw new UserError(`format qdq: '${layer.name}' is a conv; per-group scales (blocked DequantizeLinear) cover MatMul and Gemm weights only, use granularity: channel`);
  if (model.opset() < BLOCKED_DQ_OPSET) {
    throw new UserError(`format qdq: ${model.path} imports ONNX opset ${model.opset()}; per-group scales need blocked DequantizeLinear (opset ${BLOCKED_DQ_OPSET}): add opset: ${BLOCKED_DQ_OPSET} to the pass's params, or use format: matmulnbits`);
  }
  const groups = groupCount(m.cols, m.groupSize);
  const { data, axis: channelAxis } = consumedCodes(layer, m, m.symmetric);
  const blockAxis = 1 - channelAxis;
  const narrow = m.bits <= 4;
  const codeType = narrow ? (m.symmetric ? DataType.INT4 : DataType.UINT4) : m.symmetric ? DataType.INT8 : DataType.UINT8;
  const encode = (values: Int8Array | Uint8Array) => (!narrow ? new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)) : m.symmetric ? packInt4(values) : packUint4(values));
  // scales are rows × groups: transposed when the input axis comes first
  const scaleDims = blockAxis === 1 ? [m.rows, groups] : [groups, m.rows];
  const inBlockLayout = <T extends Float32Array | Uint8Array>(v: T, make: (f: Float32Array) => T): T => (blockAxis === 1 ? v : make(transpose2d(Float32Array.from(v), m.rows, groups)));
  const base = layer.name;
  const qName = uniqueInitializerName(model, `${base}.weight_quantized`);
  model.setInitializer({ name: qName, dataType: codeType, dims: layer.weightShape, data: encode(data) });
  const sName = uniqueInitializerName(model, `${base}.weight_scale`);
  const scales = inBlockLayout(m.scales, (f) => f);
  model.setInitializer({ name: sName, dataType: DataType.FLOAT, dims: scaleDims, data: new Uint8Array(scales.buffer.slice(scales.byteOffset, scales.byteOffset + scales.byteLength)) });
  const inputs = [qName, sName];
  if (!m.symmetric) {
    const zName = uniqueInitializerName(model, `${base}.weight_zero_point`);
    model.setInitializer({ name: zName, dataType: codeType, dims: scaleDims, data: encode(inBlockLayout(m.zeros, (f) => Uint8Array.from(f))) });
    inputs.push(zName);
  }
  const out = `${base}.weight_dequantized`;
  const dq = makeNode('DequantizeLinear', inputs, [out], `${layer.node.name ?? base}/DequantizeLinear`, [attr.int('axis', blockAxis), attr.int('block_size', m.groupSize)]);
  insertBefore(model.graph, layer.node, [dq]);
  layer.node.input![1] = out;
  removeUnused(model);
}

/** Codes rows × `width` (≥ cols), each plus `shift`; the padding past cols holds the row's last zero point, a 0 weight. */
function paddedBlocks(m: QuantizedMatrix, width: number, shift: number): Uint8Array {
  if (width === m.cols && !shift) return m.q;
  const groups = groupCount(m.cols, m.groupSize);
  const out = new Uint8Array(m.rows * width);
  for (let r = 0; r < m.rows; r++) {
    for (let j = 0; j < m.cols; j++) out[r * width + j] = m.q[r * m.cols + j]! + shift;
    out.fill(m.zeros[r * groups + groups - 1]! + shift, r * width + m.cols, (r + 1) * width);
  }
  return out;
}

/**
 * MatMul(x, W) -> com.microsoft.MatMulNBits(x, B, scales, zero_points)
 * Gemm(x, W, C) -> com.microsoft.MatMulNBits(x, B, scales, zero_points, , bias)
 * B is uint8 [N, ⌈K/block⌉, block·bits/8], 8-bit codes as bytes, 4-bit codes packed low nibble first
 * along K (3-bit grids too), 2-bit codes four to a byte, low bits first, the last block padded past K (MatMulNBits reads K of them); zero points are stored the same way per row (omitted for symmetric grids, whose zero
 * point 2^(bits−1) is the default).
 */
export interface NBitsStorage {
  /** scales as float16 behind a Cast to float (default float32) */
  scaleDtype?: ScaleDtype;
  /** 3-bit codes packed 8 per 3 bytes behind the unpacking subgraph of pack3.ts (default: in the 4-bit container) */
  packed3?: boolean;
  /** zero points as floats of the scales' type (m.floatZeros, else m.zeros converted), float16 behind a Cast when the scales are */
  floatZeros?: boolean;
  /** a correction added to x·W (bias_correction): MatMulNBits' bias input, merged with a Gemm's β·C; float16 behind a Cast when scaleDtype is, unless merged with a Gemm bias */
  bias?: Float32Array;
}

export function emitMatMulNBits(model: Model, layer: LinearLayer, m: QuantizedMatrix, accuracyLevel = 0, storage: NBitsStorage = {}): void {
  if (layer.kind === 'conv') throw new UserError(`format matmulnbits: '${layer.name}' is a conv; MatMulNBits replaces MatMul and Gemm only (use format: qdq)`);
  if (m.bits > 4 && m.bits !== 8) throw new UserError(`format matmulnbits: '${layer.name}' has ${m.bits}-bit weights; MatMulNBits takes 8-, 4- or 2-bit codes (3 bits in a 4-bit container)`);
  const block = m.groupSize;
  if (block < 16 || block > 256 || (block & (block - 1)) !== 0) {
    throw new UserError(`format matmulnbits: group_size ${block} for '${layer.name}'; MatMulNBits needs a power of two from 16 to 256`);
  }
  const N = m.rows;
  const K = m.cols;
  const kBlocks = groupCount(K, block);
  // 8- and 2-bit codes are stored as they are; 3 bits sit in a 4-bit container re-centred on its zero point 8
  const container = matMulNBitsContainer(m.bits);
  const shift = m.symmetric ? 2 ** (container - 1) - 2 ** (m.bits - 1) : 0;
  const pack = (values: Uint8Array) => (container === 8 ? values.slice() : container === 4 ? packUint4(values) : packUint2(values));
  const base = layer.name;
  const bName = uniqueInitializerName(model, `${base}.weight_q${container}`);
  const blobDims: [number, number, number] = [N, kBlocks, (block * container) / 8];
  const before: NodeProto[] = [];
  if (storage.packed3 && m.bits === 3) before.push(...unpack3Nodes(model, base, paddedBlocks(m, kBlocks * block, 0), blobDims, bName, shift));
  else model.setInitializer({ name: bName, dataType: DataType.UINT8, dims: blobDims, data: pack(paddedBlocks(m, kBlocks * block, shift)) });
  const sName = uniqueInitializerName(model, `${base}.weight_scales`);
  // float (or float16 -> Cast(to float)) vectors: MatMulNBits takes scales and float zero points in its activations' type
  const floatVector = (name: string, v: Float32Array, what: string) => {
    if (storage.scaleDtype === 'float16') {
      const hName = uniqueInitializerName(model, `${name}_f16`);
      const half = float32ToFloat16(v);
      model.setInitializer({ name: hName, dataType: DataType.FLOAT16, dims: [v.length], data: new Uint8Array(half.buffer) });
      before.push(makeNode('Cast', [hName], [name], `${layer.node.name ?? base}/${what}_to_float`, [attr.int('to', DataType.FLOAT)]));
    } else {
      model.setInitializer({ name, dataType: DataType.FLOAT, dims: [v.length], data: new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength)) });
    }
  };
  floatVector(sName, m.scales, 'scales');
  const inputs = [layer.input, bName, sName];
  if (!m.symmetric && storage.floatZeros) {
    if (shift) throw new Error('float zero points with a symmetric shift');
    const zName = uniqueInitializerName(model, `${base}.weight_zero_points`);
    floatVector(zName, m.floatZeros ?? Float32Array.from(m.zeros), 'zero_points');
    inputs.push(zName);
  } else if (!m.symmetric) {
    const perRow = Math.ceil((kBlocks * container) / 8);
    const zp = new Uint8Array(N * perRow);
    for (let n = 0; n < N; n++) zp.set(pack(m.zeros.subarray(n * kBlocks, (n + 1) * kBlocks)).subarray(0, perRow), n * perRow);
    const zName = uniqueInitializerName(model, `${base}.weight_zero_points`);
    model.setInitializer({ name: zName, dataType: DataType.UINT8, dims: [N * perRow], data: zp });
    inputs.push(zName);
  }
  if (layer.kind === 'gemm' && attrFloat(layer.node, 'alpha', 1) !== 1) {
    throw new UserError(`format matmulnbits: Gemm '${layer.name}' has alpha ${attrFloat(layer.node, 'alpha', 1)}; MatMulNBits has no output scale (use format: qdq)`);
  }
  const gemmBias = layer.kind === 'gemm' ? gemmBiasVector(model, layer, 'format matmulnbits') : undefined;
  let bias = gemmBias;
  if (storage.bias && gemmBias) bias = addConstant(model, `${base}.bias_corrected`, DataType.FLOAT, [N], mergedBias(model, layer, storage.bias));
  else if (storage.bias) floatVector((bias = uniqueInitializerName(model, `${base}.bias_correction`)), storage.bias, 'bias');
  if (bias) inputs.push(...Array<string>(5 - inputs.length).fill(''), bias);
  ensureOpset(model, MS_DOMAIN, 1);
  const node = makeNode(
    'MatMulNBits',
    inputs,
    [layer.output],
    `${layer.node.name ?? base}/MatMulNBits`,
    [attr.int('K', K), attr.int('N', N), attr.int('bits', container), attr.int('block_size', block), attr.int('accuracy_level', accuracyLevel)],
    MS_DOMAIN,
  );
  replaceNode(model.graph, layer.node, [...before, node]);
  removeUnused(model);
}

