import * as ort from 'onnxruntime-node';
import { ModelProtoType } from '../model/onnx-schema.js';

/**
 * The fast backend of src/linalg: one-node ONNX graphs with symbolic dims, built in memory and run by
 * ONNX Runtime's CPU provider (MLAS SGEMM/DGEMM). One session per kernel key is created once and reused
 * for every shape. ORT CPU runs Gemm on float64 natively (measured ~65 GFLOP/s on this machine, about
 * half of float32), so float64 kernels are genuine double-precision arithmetic, not a float32 emulation.
 */

export type FloatArray = Float32Array | Float64Array;
export type FloatDType = 'float32' | 'float64';

const ELEM_TYPE: Record<FloatDType, number> = { float32: 1, float64: 11 };
const ATTR_INT = 2;

export function dtypeOf(a: FloatArray): FloatDType {
  return a instanceof Float64Array ? 'float64' : 'float32';
}

export interface KernelValue {
  name: string;
  dtype: FloatDType;
  /** symbolic dim names, one per axis */
  dims: string[];
}

export interface KernelNode {
  op: string;
  inputs: string[];
  outputs: string[];
  /** integer attributes only (transA, transB, to) */
  attrs?: Record<string, number>;
}

export interface KernelGraph {
  inputs: KernelValue[];
  outputs: KernelValue[];
  nodes: KernelNode[];
}

function valueInfo(v: KernelValue): unknown {
  return { name: v.name, type: { tensor_type: { elem_type: ELEM_TYPE[v.dtype], shape: { dim: v.dims.map((d) => ({ dim_param: d })) } } } };
}

/** ModelProto bytes for a kernel graph (IR 8, opset 17: Gemm and Cast are unchanged since opset 13). */
export function encodeKernel(key: string, g: KernelGraph): Uint8Array {
  const node = g.nodes.map((n, i) => ({
    name: `${key}/${n.op}_${i}`,
    op_type: n.op,
    input: n.inputs,
    output: n.outputs,
    attribute: Object.entries(n.attrs ?? {}).map(([name, i]) => ({ name, type: ATTR_INT, i })),
  }));
  const graph = { name: key, node, input: g.inputs.map(valueInfo), output: g.outputs.map(valueInfo) };
  return ModelProtoType.encode({ ir_version: 8, producer_name: 'pare.linalg', opset_import: [{ domain: '', version: 17 }], graph } as never).finish();
}

const sessions = new Map<string, Promise<ort.InferenceSession>>();

function session(key: string, build: () => KernelGraph): Promise<ort.InferenceSession> {
  let s = sessions.get(key);
  if (!s) {
    const bytes = encodeKernel(key, build());
    s = ort.InferenceSession.create(bytes, { intraOpNumThreads: 0, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential', enableCpuMemArena: false });
    s.catch(() => sessions.delete(key));
    sessions.set(key, s);
  }
  return s;
}

export interface Feed {
  data: FloatArray;
  dims: number[];
}

/** Runs the kernel `key` (built by `build` on first use) and returns its single output's data. */
export async function runKernel(key: string, build: () => KernelGraph, feeds: Record<string, Feed>): Promise<FloatArray> {
  const s = await session(key, build);
  const inputs: Record<string, ort.Tensor> = {};
  for (const [name, f] of Object.entries(feeds)) inputs[name] = new ort.Tensor(dtypeOf(f.data), f.data, f.dims);
  const out = await s.run(inputs);
  return out[s.outputNames[0]!]!.data as FloatArray;
}

/** Releases every cached kernel session (tests and benchmarks call this at exit; later calls rebuild them). */
export async function releaseKernels(): Promise<void> {
  const all = [...sessions.values()];
  sessions.clear();
  for (const s of all) await (await s).release();
}
