import type * as tfjs from '@tensorflow/tfjs';
import { UserError } from '../../errors.js';
import { DataType, dtypeName } from '../../model/dtype.js';
import { attrInt } from '../../model/graph.js';
import type { HostTensor, Model } from '../../model/model.js';
import type { NodeProto } from '../../model/onnx-schema.js';
import { fromFloat32, toFloat32 } from '../../model/pack.js';
import type { Tf } from '../tf.js';
import { encodeCodes, expandGrid, FakeQuantWeight, gridWindow, integerRange } from './fake-quant.js';
import { decodeNBits, encodeNBits } from './matmulnbits.js';

/**
 * Trainable initializers: a float one becomes a tf.Variable directly; an integer one (codes feeding
 * DequantizeLinear, MatMulNBits or MatMulInteger) becomes a fake-quantized float variable.
 */
export interface Trainables {
  variables: Map<string, tfjs.Variable>;
  fakeQuant: Map<string, FakeQuantWeight>;
  /** float variables' storage dtype and dims, for writeBack */
  plain: Map<string, { dataType: number; dims: number[] }>;
}

const FLOATS = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE]);

export function createTrainables(tf: Tf, model: Model, trainable: (name: string) => boolean): Trainables {
  const out: Trainables = { variables: new Map(), fakeQuant: new Map(), plain: new Map() };
  const consumers = new Map<string, NodeProto[]>();
  for (const n of model.graph.node ?? []) for (const i of n.input ?? []) if (i) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  for (const init of model.graph.initializer ?? []) {
    const name = init.name ?? '';
    if (!trainable(name)) continue;
    const t = model.tensor(name);
    const count = t.dims.reduce((a, b) => a * b, 1);
    if (FLOATS.has(t.dataType)) {
      out.variables.set(name, tf.variable(tf.tensor(toFloat32(t.dataType, t.data, count), t.dims, 'float32'), true, `w/${name}`));
      out.plain.set(name, { dataType: t.dataType, dims: t.dims });
      continue;
    }
    const fq = fakeQuantFor(tf, model, t, consumers.get(name) ?? []);
    out.fakeQuant.set(name, fq);
    out.variables.set(name, fq.variable);
  }
  return out;
}

/** The user error for a MatMulNBits whose codes or scales the graph computes instead of storing. */
export function computedNBitsInputs(op: NodeProto): string {
  return `MatMulNBits '${op.name ?? ''}' computes its codes or scales (or zero points) in the graph (quantize's packed_3bit or scale_dtype: float16 storage); the tfjs runtime that distill.kd trains with reads them as stored tensors: distill before quantizing, or quantize without packed_3bit and scale_dtype: float16`;
}

function fakeQuantFor(tf: Tf, model: Model, t: HostTensor, users: NodeProto[]): FakeQuantWeight {
  const count = t.dims.reduce((a, b) => a * b, 1);
  const op = users.length === 1 ? users[0]! : undefined;
  const sameSlot = (slot: number) => op!.input![slot] === t.name;
  if (op?.op_type === 'DequantizeLinear' && sameSlot(0)) {
    const scale = model.tensor(op.input![1]!);
    const zero = op.input![2] ? model.tensor(op.input![2]) : undefined;
    const grid = expandGrid(t.dims, scale, zero, attrInt(op, 'axis', 1), attrInt(op, 'block_size', 0));
    const codes = toFloat32(t.dataType, t.data, count);
    const [qmin, qmax] = gridWindow(codes, grid.zero, ...integerRange(t.dataType));
    const encode = (q: Float32Array): HostTensor => ({ name: t.name, dataType: t.dataType, dims: t.dims, data: encodeCodes(t.dataType, q) });
    return new FakeQuantWeight(tf, t.name, t.dims, grid.scale, grid.zero, qmin, qmax, codes, encode);
  }
  if (op?.op_type === 'MatMulNBits' && sameSlot(1)) {
    const layout = { N: attrInt(op, 'N', 0), K: attrInt(op, 'K', 0), bits: attrInt(op, 'bits', 4), block: attrInt(op, 'block_size', 32) };
    if (!model.hasInitializer(op.input![2]!)) throw new UserError(computedNBitsInputs(op));
    const scales = model.tensor(op.input![2]!);
    const zeroTensor = op.input![3] ? model.tensor(op.input![3]) : undefined;
    if (zeroTensor && zeroTensor.dataType !== DataType.UINT8) {
      throw new UserError(`MatMulNBits '${op.name ?? ''}' stores float zero points (quantize's float_zero_points); distill.kd trains codes on integer grids only: distill before quantizing, or quantize without float_zero_points`);
    }
    const zeros = zeroTensor?.data;
    const d = decodeNBits(t.data, toFloat32(scales.dataType, scales.data), zeros, layout);
    // a padded last block holds its row's last zero point past K, as emit.ts writes it
    const pad = Float32Array.from({ length: layout.N }, (_, n) => d.zero[n * layout.K + layout.K - 1]!);
    const encode = (q: Float32Array): HostTensor => ({ name: t.name, dataType: t.dataType, dims: t.dims, data: encodeNBits(q, layout, pad) });
    const [qmin, qmax] = gridWindow(d.codes, d.zero, 0, 2 ** layout.bits - 1);
    return new FakeQuantWeight(tf, t.name, [layout.N, layout.K], d.scale, d.zero, qmin, qmax, d.codes, encode);
  }
  if (op?.op_type === 'MatMulInteger' && sameSlot(1)) {
    // codes on a unit grid: the weight scale is applied by the Mul after the product
    const [qmin, qmax] = integerRange(t.dataType);
    const encode = (q: Float32Array): HostTensor => ({ name: t.name, dataType: t.dataType, dims: t.dims, data: encodeCodes(t.dataType, q) });
    return new FakeQuantWeight(tf, t.name, t.dims, new Float32Array(count).fill(1), new Float32Array(count), qmin, qmax, toFloat32(t.dataType, t.data, count), encode);
  }
  throw new UserError(
    `${model.path}: initializer '${t.name}' (${dtypeName(t.dataType)}) is marked trainable but is not the weight of exactly one DequantizeLinear, MatMulNBits or MatMulInteger; only float weights and quantized codes can be trained`,
  );
}

/** Store every variable's value back into `model` in its own dtype and layout. */
export function writeTrainables(tr: Trainables, model: Model): void {
  for (const [name, v] of tr.variables) {
    const fq = tr.fakeQuant.get(name);
    if (fq) {
      model.setInitializer(fq.quantized());
      continue;
    }
    const { dataType, dims } = tr.plain.get(name)!;
    model.setInitializer({ name, dataType, dims, data: fromFloat32(dataType, v.dataSync() as Float32Array) });
  }
}
