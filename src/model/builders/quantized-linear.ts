import { UserError } from '../../errors.js';
import { DataType } from '../dtype.js';
import { packUint4 } from '../pack.js';
import type { QuantScheme } from '../quantized-safetensors.js';
import { attr, type GraphBuilder } from './graph-builder.js';

/**
 * y = x · Wᵀ for a module `m` stored quantized (docs/safetensors-layout.md), as the ONNX forms pare's
 * quantizers emit, so a reloaded checkpoint computes what the compressed graph did:
 *   channel/tensor: MatMul(x, DequantizeLinear(Transpose(codes), scale, zero, axis=1))
 *   group:          com.microsoft.MatMulNBits(x, codes as [N, K/block, block·bits/8], scales, zeros)
 * `path` is the layer's node path (`/layers.0/mlp/gate_proj`); the MatMul keeps its exported name.
 */
export function quantizedLinear(g: GraphBuilder, x: string, m: string, s: QuantScheme, shape: [number, number], path: string): string {
  const [N, K] = shape;
  const bad = (what: string) => new UserError(`${m}: ${what} for quantization scheme ${JSON.stringify(s)} (see docs/safetensors-layout.md)`);
  const groups = s.strategy === 'group' ? K / s.group_size! : 1;
  if (!Number.isInteger(groups)) throw bad(`${K} inputs are not a multiple of group_size ${s.group_size}`);
  const scaleCount = s.strategy === 'tensor' ? 1 : N * groups;
  const zeroName = `${m}.weight_zero_point`;
  if (!s.symmetric && !g.has(zeroName)) throw bad(`tensor '${zeroName}' is missing`);

  if (s.strategy !== 'group') {
    const perTensor = s.strategy === 'tensor';
    const codes = g.stored(`${m}.weight`, { dataType: DataType.INT8, dims: [N, K] }).name;
    const scale = g.stored(`${m}.weight_scale`, { dataType: DataType.FLOAT, dims: perTensor ? [] : [N] }).name;
    const inputs = [g.op('Transpose', [codes], `${path}/Transpose`, [attr.ints('perm', [1, 0])]), scale];
    if (!s.symmetric) inputs.push(g.stored(zeroName, { dataType: DataType.INT8, dims: perTensor ? [] : [N] }).name);
    const w = g.op('DequantizeLinear', inputs, `${path}/DequantizeLinear`, perTensor ? [] : [attr.int('axis', 1)]);
    return g.op('MatMul', [x, w], `${path}/MatMul`);
  }

  const bits = s.num_bits;
  const block = s.group_size!;
  const blob = (block * bits) / 8;
  // MatMulNBits codes are unsigned around 2^(bits−1): the packed 4-bit words already are (compressed-tensors offsets by 8 too); int8 codes shift by 128
  const B =
    bits === 4
      ? g.stored(`${m}.weight_packed`, { dataType: DataType.UINT8, dims: [N, groups, blob] }).name
      : g.inline(`${m}.weight_q8`, DataType.UINT8, [N, groups, blob], Uint8Array.from(new Int8Array(viewBytes(g.read(`${m}.weight`), N * K)), (c) => c + 128));
  if (bits === 4) checkShape(g, m, N, K);
  const scales = g.stored(`${m}.weight_scale`, { dataType: DataType.FLOAT, dims: [scaleCount] }).name;
  const inputs = [x, B, scales];
  if (!s.symmetric) {
    const signed = new Int8Array(viewBytes(g.read(zeroName), N * groups));
    const perRow = Math.ceil((groups * bits) / 8);
    const zp = new Uint8Array(N * perRow);
    for (let n = 0; n < N; n++) {
      const row = Uint8Array.from(signed.subarray(n * groups, (n + 1) * groups), (z) => z + 2 ** (bits - 1));
      zp.set(bits === 8 ? row : packUint4(row).subarray(0, perRow), n * perRow);
    }
    inputs.push(g.inline(`${m}.weight_zero_points`, DataType.UINT8, [N * perRow], zp));
  }
  g.useDomain('com.microsoft');
  const attrs = [attr.int('K', K), attr.int('N', N), attr.int('bits', bits), attr.int('block_size', block), attr.int('accuracy_level', s.accuracy_level ?? 0)];
  return g.op('MatMulNBits', inputs, `${path}/MatMul/MatMulNBits`, attrs, 'com.microsoft');
}

function viewBytes(bytes: Uint8Array, count: number): ArrayBuffer {
  if (bytes.byteLength !== count) throw new Error(`expected ${count} bytes, got ${bytes.byteLength}`);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** `<m>.weight_shape` must say [N, K]. */
function checkShape(g: GraphBuilder, m: string, N: number, K: number): void {
  const name = `${m}.weight_shape`;
  if (!g.has(name)) return;
  const b = g.read(name);
  const v = new BigInt64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
  if (v.length !== 2 || Number(v[0]) !== N || Number(v[1]) !== K) throw new UserError(`${m}: ${name} says [${Array.from(v).join(', ')}], config.json implies [${N}, ${K}]`);
}
