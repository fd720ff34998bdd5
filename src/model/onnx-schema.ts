import protobuf from 'protobufjs';
import { ONNX_PROTO } from './onnx-proto-text.js';

/** The ONNX schema of onnx-proto-text.ts, parsed (field names as written: `keepCase`); hand-written types for its messages follow. */
export const ONNX_ROOT = protobuf.parse(ONNX_PROTO, { keepCase: true }).root;
export const ModelProtoType = ONNX_ROOT.lookupType('onnx.ModelProto');
export const GraphProtoType = ONNX_ROOT.lookupType('onnx.GraphProto');
export const TensorProtoType = ONNX_ROOT.lookupType('onnx.TensorProto');

/** int64 fields decode to a number when exactly representable, otherwise to a protobufjs Long (kept for exact re-encoding). */
export interface LongBits {
  low: number;
  high: number;
  unsigned: boolean;
}
export type Int64 = number | LongBits;

export function int64ToBigInt(v: Int64): bigint {
  if (typeof v === 'number') return BigInt(v);
  const bits = (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
  return v.unsigned ? bits : BigInt.asIntN(64, bits);
}

export function int64ToNumber(v: Int64 | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : Number(int64ToBigInt(v));
}

/**
 * Turn decoded messages into plain objects holding only the fields present on the wire (protobufjs puts
 * defaults on prototypes, e.g. a truthy Long zero for an unset int64), and every Long into a number where
 * that is exact.
 */
export function normaliseLongs(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return value;
  if (isLong(value)) {
    const big = int64ToBigInt(value);
    return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : value;
  }
  if (Array.isArray(value)) {
    for (let k = 0; k < value.length; k++) value[k] = normaliseLongs(value[k]);
    return value;
  }
  const obj = value as Record<string, unknown>;
  const plain: Record<string, unknown> = {};
  for (const key of Object.keys(obj)) plain[key] = normaliseLongs(obj[key]);
  return plain;
}

function isLong(v: object): v is LongBits {
  return 'low' in v && 'high' in v && 'unsigned' in v;
}

export interface StringStringEntry {
  key?: string;
  value?: string;
}

export interface TensorProto {
  dims?: Int64[];
  data_type?: number;
  segment?: { begin?: Int64; end?: Int64 };
  float_data?: number[];
  int32_data?: number[];
  string_data?: Uint8Array[];
  int64_data?: Int64[];
  name?: string;
  doc_string?: string;
  raw_data?: Uint8Array;
  external_data?: StringStringEntry[];
  data_location?: number;
  double_data?: number[];
  uint64_data?: Int64[];
  metadata_props?: StringStringEntry[];
}

export interface TensorShapeDim {
  dim_value?: Int64;
  dim_param?: string;
  denotation?: string;
}

export interface TypeProto {
  tensor_type?: { elem_type?: number; shape?: { dim?: TensorShapeDim[] } };
  sequence_type?: { elem_type?: TypeProto };
  map_type?: { key_type?: number; value_type?: TypeProto };
  optional_type?: { elem_type?: TypeProto };
  sparse_tensor_type?: { elem_type?: number; shape?: { dim?: TensorShapeDim[] } };
  opaque_type?: { domain?: string; name?: string };
  denotation?: string;
}

export interface ValueInfoProto {
  name?: string;
  type?: TypeProto;
  doc_string?: string;
  metadata_props?: StringStringEntry[];
}

export const AttributeType = {
  UNDEFINED: 0, FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, SPARSE_TENSOR: 11, TYPE_PROTO: 13,
  FLOATS: 6, INTS: 7, STRINGS: 8, TENSORS: 9, GRAPHS: 10, SPARSE_TENSORS: 12, TYPE_PROTOS: 14,
} as const;

export interface AttributeProto {
  name?: string;
  ref_attr_name?: string;
  doc_string?: string;
  type?: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  sparse_tensor?: unknown;
  tp?: TypeProto;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
  tensors?: TensorProto[];
  graphs?: GraphProto[];
  sparse_tensors?: unknown[];
  type_protos?: TypeProto[];
}

export interface NodeProto {
  input?: string[];
  output?: string[];
  name?: string;
  op_type?: string;
  domain?: string;
  overload?: string;
  attribute?: AttributeProto[];
  doc_string?: string;
  metadata_props?: StringStringEntry[];
  device_configurations?: unknown[];
}

export interface GraphProto {
  node?: NodeProto[];
  name?: string;
  initializer?: TensorProto[];
  sparse_initializer?: unknown[];
  doc_string?: string;
  input?: ValueInfoProto[];
  output?: ValueInfoProto[];
  value_info?: ValueInfoProto[];
  quantization_annotation?: unknown[];
  metadata_props?: StringStringEntry[];
}

export interface OperatorSetId {
  domain?: string;
  version?: Int64;
}

export interface ModelProto {
  ir_version?: Int64;
  opset_import?: OperatorSetId[];
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: Int64;
  doc_string?: string;
  graph?: GraphProto;
  metadata_props?: StringStringEntry[];
  training_info?: unknown[];
  functions?: unknown[];
  configuration?: unknown[];
}
