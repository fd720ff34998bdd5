import type * as tfjs from '@tensorflow/tfjs';
import type { HostTensor } from '../../../model/model.js';
import type { NodeProto } from '../../../model/onnx-schema.js';
import type { Tf } from '../../tf.js';
import type { FakeQuantWeight } from '../fake-quant.js';
import { HostArray } from '../host.js';

/** A value flowing through the executor: a host array (shape arithmetic) or a tfjs tensor. */
export type Val = HostArray | tfjs.Tensor;

export function isHost(v: Val): v is HostArray {
  return v instanceof HostArray;
}

/** What an op implementation sees of its node. */
export interface OpArgs {
  node: NodeProto;
  tf: Tf;
  /** the default-domain opset the model imports */
  opset: number;
  inputCount: number;
  has(i: number): boolean;
  val(i: number): Val;
  /** true when every present input is a host array */
  allHost(): boolean;
  /** input i as a tfjs tensor (host arrays are uploaded, once per static value) */
  tensor(i: number): tfjs.Tensor;
  /** input i on the host (a tensor is read back: only for small shape-like inputs) */
  host(i: number): HostArray;
  ints(i: number): number[];
  /** the trainable quantized weight behind input i, when that input is one */
  fakeQuant(i: number): FakeQuantWeight | undefined;
  int(name: string, fallback: number): number;
  intList(name: string): number[] | undefined;
  float(name: string, fallback: number): number;
  str(name: string, fallback: string): string;
  tensorAttr(name: string): HostArray | undefined;
  /** the raw initializer behind input i, when it is one */
  initializer(i: number): HostTensor | undefined;
  /** a tensor computed once per node and kept for every later run */
  memo(make: () => tfjs.Tensor): tfjs.Tensor;
}

export type OpImpl = (a: OpArgs) => Val | Val[];

/** One op the executor implements: its ONNX type, the implementation, and its domain ('' is the default ONNX domain). */
export type OpEntry = readonly [opType: string, impl: OpImpl, domain?: string];
