import { statSync } from 'node:fs';
import { UserError } from '../errors.js';
import { dtypeName } from './dtype.js';
import { buildFromSafetensors, FAMILIES, unknownConfigKeys } from './builders/index.js';
import { modelIo, type KvCacheIo, type ModelIo } from './io.js';
import { linears } from './linears.js';
import { readWeight } from './linear-weights.js';
import type { Model } from './model.js';
import { int64ToNumber, type ValueInfoProto } from './onnx-schema.js';
import { openSafetensors, readConfigJson } from './safetensors.js';
import { modelSize, type SizeStats } from './size.js';
import { quantizedLayers } from './quantized-layers.js';

export interface ValueSummary {
  name: string;
  dtype: string;
  shape: (number | string)[];
}

export interface LinearSummary {
  name: string;
  kind: string;
  /** [out, in] (conv: [out, in/g·kh·kw]) */
  shape: [number, number];
  dtype: string;
  sparsity: number;
}

export interface QuantizedSummary {
  name: string;
  op: string;
  /** [out, in] (conv: [out, in/g·kh·kw]) */
  shape: [number, number];
  dtype: string;
  granularity: 'channel' | 'tensor';
}

export interface OnnxInspection {
  format: 'onnx';
  path: string;
  ir_version: number;
  producer: string;
  opsets: { domain: string; version: number }[];
  size: SizeStats;
  ops: Record<string, number>;
  inputs: ValueSummary[];
  outputs: ValueSummary[];
  /** the decoder's KV cache, when it has one */
  kv_cache?: KvCacheSummary;
  /** why pare could not describe the model's inputs (it can still be inspected, not evaluated) */
  io_problem?: string;
  linears: LinearSummary[];
  /** layers stored in integers (QLinearConv, QLinearMatMul, QDQ), when the model has any */
  quantized_layers?: QuantizedSummary[];
  /** `inspect --lenient` of a model pare refuses: what is wrong with it (sizes and layers leave out the broken tensors) */
  problems?: string[];
}

export interface KvCacheSummary {
  layers: number;
  /** per cache layer (null where the graph leaves it symbolic) */
  kv_heads: (number | null)[];
  head_dim: (number | null)[];
  past: string[];
  present: string[];
}

export interface SafetensorsInspection {
  format: 'safetensors';
  path: string;
  file_bytes: number;
  params: number;
  bytes_by_dtype: Record<string, number>;
  tensors: { name: string; dtype: string; shape: number[] }[];
  config?: Record<string, unknown>;
  /** the family pare builds it as ('Qwen2'), when it can */
  family?: string;
  /** why pare cannot build it into a graph (a one-line user error) */
  build_problem?: string;
  /** the config.json model_types pare builds, when it cannot build this one */
  supported_model_types?: string[];
  /** config.json keys pare neither reads nor knows to be irrelevant (ignored when it builds) */
  unknown_config_keys?: string[];
}

/**
 * What `pare inspect` shows of an ONNX model. `readWeights: false` leaves out what needs tensor
 * values (layers, nonzeros): the fallback for a broken model shown by `inspect --lenient`.
 */
export function inspectOnnx(model: Model, opts: { readWeights?: boolean } = {}): OnnxInspection {
  const readWeights = opts.readWeights ?? true;
  const ops: Record<string, number> = {};
  for (const n of model.graph.node ?? []) {
    const key = n.domain ? `${n.domain}.${n.op_type}` : (n.op_type ?? '');
    ops[key] = (ops[key] ?? 0) + 1;
  }
  const inits = new Set((model.graph.initializer ?? []).map((t) => t.name));
  let io: ModelIo | undefined;
  let ioProblem: string | undefined;
  try {
    io = modelIo(model);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    ioProblem = e.message;
  }
  const quantized = quantizedLayers(model);
  return {
    format: 'onnx',
    path: model.path,
    ir_version: int64ToNumber(model.proto.ir_version),
    producer: [model.proto.producer_name, model.proto.producer_version].filter(Boolean).join(' '),
    opsets: (model.proto.opset_import ?? []).map((o) => ({ domain: o.domain || 'ai.onnx', version: int64ToNumber(o.version) })),
    size: modelSize(model, undefined, { readWeights }),
    ops: Object.fromEntries(Object.entries(ops).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))),
    inputs: (model.graph.input ?? []).filter((v) => !inits.has(v.name)).map(summarizeValue),
    outputs: (model.graph.output ?? []).map(summarizeValue),
    ...(io?.kv ? { kv_cache: summarizeKvCache(io.kv) } : {}),
    ...(ioProblem ? { io_problem: ioProblem } : {}),
    ...(quantized.length ? { quantized_layers: quantized.map((q) => ({ name: q.name, op: q.op, shape: q.shape, dtype: q.dtype, granularity: q.perChannel ? ('channel' as const) : ('tensor' as const) })) } : {}),
    linears: (readWeights ? linears(model) : []).map((l) => {
      const W = readWeight(model, l);
      let zeros = 0;
      for (let i = 0; i < W.length; i++) if (W[i] === 0) zeros++;
      return {
        name: l.name,
        kind: l.kind,
        shape: [l.outFeatures, l.inFeatures] as [number, number],
        dtype: dtypeName(model.initializer(l.weight)?.data_type ?? 0),
        sparsity: W.length ? zeros / W.length : 0,
      };
    }),
  };
}

export function inspectSafetensors(path: string): SafetensorsInspection {
  const file = openSafetensors(path);
  try {
    const tensors = [...file.tensors.values()].map((t) => ({ name: t.name, dtype: dtypeName(t.dataType), shape: [...t.shape] }));
    const bytes_by_dtype: Record<string, number> = {};
    let params = 0;
    for (const t of file.tensors.values()) {
      bytes_by_dtype[dtypeName(t.dataType)] = (bytes_by_dtype[dtypeName(t.dataType)] ?? 0) + (t.end - t.begin);
      params += t.shape.reduce((a, b) => a * b, 1);
    }
    let config: Record<string, unknown> | undefined;
    try {
      config = readConfigJson(path);
    } catch {
      config = undefined;
    }
    return { format: 'safetensors', path, file_bytes: statSync(path).size, params, bytes_by_dtype, tensors, config, ...(config ? buildability(path, config) : {}) };
  } finally {
    file.close();
  }
}

/** Whether pare builds the checkpoint (tensors stay on disk), and the config keys it does not understand. */
function buildability(path: string, config: Record<string, unknown>): Pick<SafetensorsInspection, 'family' | 'build_problem' | 'supported_model_types' | 'unknown_config_keys'> {
  const unknown = unknownConfigKeys(config);
  const keys = unknown.length ? { unknown_config_keys: unknown } : {};
  try {
    buildFromSafetensors(path).close();
    return { family: FAMILIES[config.model_type as string]!.name, ...keys };
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    return { build_problem: e.message, supported_model_types: Object.keys(FAMILIES), ...keys };
  }
}

export function summarizeKvCache(kv: KvCacheIo): KvCacheSummary {
  return {
    layers: kv.layers.length,
    kv_heads: kv.layers.map((l) => l.heads ?? null),
    head_dim: kv.layers.map((l) => l.headDim ?? null),
    past: kv.layers.flatMap((l) => [l.pastKey, l.pastValue]),
    present: kv.layers.flatMap((l) => [l.presentKey, l.presentValue]),
  };
}

function summarizeValue(v: ValueInfoProto): ValueSummary {
  const tt = v.type?.tensor_type;
  return {
    name: v.name ?? '',
    dtype: tt ? dtypeName(tt.elem_type ?? 0) : 'non-tensor',
    shape: (tt?.shape?.dim ?? []).map((d) => (d.dim_value !== undefined ? int64ToNumber(d.dim_value) : (d.dim_param ?? '?'))),
  };
}
