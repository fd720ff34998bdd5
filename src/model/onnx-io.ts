import { rmSync } from 'node:fs';
import { readInputFile } from '../util/read-file.js';
import { basename, dirname, join } from 'node:path';
import { UserError } from '../errors.js';
import { tempPathFor, trackTemp, untrackTemp } from '../util/atomic-write.js';
import { closeQuietly, makeDirs, openForWrite, renameOver, syncAndClose, writeAllAt } from '../util/fs-write.js';
import { byteLength, elementCount } from './dtype.js';
import { Model } from './model.js';
import { checkModel, modelProblems, type ModelProblem } from './validate.js';
import { writeModelStreaming, type StreamedTensor } from './onnx-stream.js';
import {
  int64ToNumber,
  ModelProtoType,
  normaliseLongs,
  type AttributeProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './onnx-schema.js';

/** protobuf messages cannot pass 2 GiB; past this, tensors must go to an external data file. */
const PROTO_LIMIT = 2 ** 31 - 1;
const HEADROOM = 64 * 2 ** 20;
const EXTERNAL_ALIGN = 64;

export function decodeModelProto(bytes: Uint8Array, path: string): ModelProto {
  if (bytes.byteLength === 0) throw new UserError(`${path}: empty file, not an ONNX model`);
  let proto: ModelProto;
  try {
    proto = normaliseLongs(ModelProtoType.decode(bytes)) as ModelProto;
  } catch (e) {
    throw new UserError(`${path}: not an ONNX model or truncated (${(e as Error).message})`);
  }
  if (!proto.graph || int64ToNumber(proto.ir_version) <= 0 || !(proto.opset_import?.length ?? 0)) {
    throw new UserError(`${path}: not an ONNX model (no graph, IR version or opset import)`);
  }
  return proto;
}

/** An ONNX file as read: the decoded model and the bytes it came from (hashed by the caller). */
export interface ReadOnnx {
  model: Model;
  bytes: Uint8Array;
}

/**
 * Read, decode and validate an ONNX file (src/model/validate.ts): a model ONNX Runtime would refuse,
 * or whose tensors do not match what the file holds, is a user error naming the node or tensor.
 */
export function readOnnxFile(path: string): ReadOnnx {
  const bytes = readOnnxBytes(path);
  const proto = decodeModelProto(bytes, path);
  checkModel(proto, path, bytes.byteLength);
  return { model: new Model(proto, path, 'onnx'), bytes };
}

/**
 * `pare inspect --lenient`: the model as far as it decodes, its problems listed instead of thrown,
 * and every tensor a problem names left out of the graph so that reading the rest is safe.
 */
export function readOnnxLenient(path: string): { model: Model; problems: string[] } {
  const bytes = readOnnxBytes(path);
  const proto = decodeModelProto(bytes, path);
  const problems: ModelProblem[] = modelProblems(proto, path, bytes.byteLength);
  const broken = new Set(problems.flatMap((p) => (p.tensor ? [p.tensor] : [])));
  if (broken.size > 0) proto.graph!.initializer = (proto.graph!.initializer ?? []).filter((t) => !broken.has(t));
  return { model: new Model(proto, path, 'onnx'), problems: problems.map((p) => p.message) };
}

export function readOnnx(path: string): Model {
  return readOnnxFile(path).model;
}

/** A protobuf message stops at 2 GiB; a bigger .onnx is not a model. */
function readOnnxBytes(path: string): Buffer {
  return readInputFile(path, 'ONNX model', { maxBytes: PROTO_LIMIT, fix: 'an ONNX file past 2 GiB is not a valid protobuf; larger models keep their weights in external data files' });
}

export interface WriteOnnxOptions {
  /** true: every tensor of at least `externalThreshold` bytes goes to `<file>.data`; default: only when the model passes 2 GB */
  externalData?: boolean;
  externalThreshold?: number;
  /** name of the external data file beside `path` (default `<file>.data`; transformers.js folders use `<file>_data`) */
  externalDataName?: string;
}

export interface WrittenFiles {
  files: string[];
  bytes: number;
}

/**
 * Write `model` to `path` atomically, tensor by tensor (src/model/onnx-stream.ts): each
 * initializer's bytes are read from where they live (the input file's external data, the spill file,
 * memory) just before they are written, so the file is never built whole in memory. Tensors the
 * model still holds unchanged are written from the same TensorProto, so their bytes (and storage
 * form) are identical to the input's.
 */
export function writeOnnx(model: Model, path: string, opts: WriteOnnxOptions = {}): WrittenFiles {
  const threshold = opts.externalThreshold ?? 1024;
  const external = opts.externalData ?? estimateBytes(model) > PROTO_LIMIT - HEADROOM;
  const graph = model.graph;

  if (!external) {
    const bytes = writeModelStreaming(path, model.proto, (graph.initializer ?? []).map((t) => streamedTensor(model, t)));
    return { files: [path], bytes };
  }

  const dataName = opts.externalDataName ?? `${basename(path)}.data`;
  const dataPath = join(dirname(path), dataName);
  const sink = new ExternalSink(dataPath, dataName);
  try {
    // tensors below the threshold stay in the .onnx: as they are, or read when written if stored elsewhere
    const initializer: StreamedTensor[] = (graph.initializer ?? []).map((t) => {
      const host = model.tensor(t);
      return host.data.byteLength >= threshold ? { proto: sink.add(t, host.data) } : streamedTensor(model, t);
    });
    // large Constant nodes become initializers so their bytes can leave the protobuf too (ORT #17944)
    const node: NodeProto[] = [];
    for (const n of graph.node ?? []) {
      const value = constantTensor(n);
      if (value && byteLength(value.data_type ?? 0, elementCount((value.dims ?? []).map(int64ToNumber))) >= threshold) {
        const t = { ...value, name: n.output![0] };
        initializer.push({ proto: sink.add(t, model.tensor(t).data) });
      } else {
        node.push(n);
      }
    }
    sink.commit();
    const bytes = writeModelStreaming(path, { ...model.proto, graph: { ...graph, node } }, initializer);
    return { files: [path, dataPath], bytes: bytes + sink.size };
  } catch (e) {
    // a .data file already moved into place is useless without its .onnx
    sink.abort();
    throw e;
  }
}

/** An initializer as the inline file holds it: raw_data from memory, or read from external data or the spill file when written. */
function streamedTensor(model: Model, t: TensorProto): StreamedTensor {
  if (t.data_location === 1) {
    const { external_data: _e, data_location: _l, ...proto } = t;
    const length = byteLength(t.data_type ?? 0, elementCount((t.dims ?? []).map(int64ToNumber)));
    return { proto, raw: { length, read: () => model.tensor(t).data } };
  }
  const raw = t.raw_data;
  return raw ? { proto: t, raw: { length: raw.byteLength, read: () => raw } } : { proto: t };
}

/** The model as one protobuf with every tensor inline (for ONNX Runtime sessions and small files). */
export function encodeInline(model: Model, extraOutputs: string[] = []): Uint8Array {
  const have = new Set((model.graph.output ?? []).map((o) => o.name));
  return encodeInlineWithOutputs(model, [...(model.graph.output ?? []), ...extraOutputs.filter((n) => !have.has(n)).map((name) => ({ name }))]);
}

/**
 * The model inline with `outputs` as its only graph outputs: ONNX Runtime then runs just the nodes
 * those values need (a prefix of the network when capturing a block's inputs).
 */
export function encodeInlineWithOutputs(model: Model, outputs: (string | ValueInfoProto)[]): Uint8Array {
  const graph = model.graph;
  const initializer = (graph.initializer ?? []).map((t) => (t.data_location === 1 ? inlineTensor(model, t) : t));
  const output = outputs.map((o) => (typeof o === 'string' ? { name: o } : o));
  return ModelProtoType.encode({ ...model.proto, graph: { ...graph, initializer, output } } as never).finish();
}

function inlineTensor(model: Model, t: TensorProto): TensorProto {
  const { external_data: _e, data_location: _l, ...rest } = t;
  return { ...rest, raw_data: model.tensor(t).data };
}

function constantTensor(n: NodeProto): TensorProto | undefined {
  if (n.op_type !== 'Constant' || (n.domain ?? '') !== '') return undefined;
  const a: AttributeProto | undefined = n.attribute?.find((x) => x.name === 'value');
  return a?.t;
}

function estimateBytes(model: Model): number {
  let total = 0;
  for (const t of model.graph.initializer ?? []) total += byteLength(t.data_type ?? 0, elementCount((t.dims ?? []).map(int64ToNumber)));
  for (const n of model.graph.node ?? []) {
    const v = constantTensor(n);
    if (v) total += byteLength(v.data_type ?? 0, elementCount((v.dims ?? []).map(int64ToNumber)));
  }
  return total;
}

/** Appends tensor bytes to a temp data file; renamed into place before the .onnx that refers to it. */
class ExternalSink {
  private readonly tmp: string;
  private fd: number | undefined;
  private committed = false;
  size = 0;

  constructor(
    private readonly target: string,
    private readonly location: string,
  ) {
    this.tmp = tempPathFor(target);
    trackTemp(this.tmp);
    try {
      makeDirs(dirname(target));
      this.fd = openForWrite(this.tmp, target);
    } catch (e) {
      untrackTemp(this.tmp);
      throw e;
    }
  }

  add(t: TensorProto, data: Uint8Array): TensorProto {
    const pad = (EXTERNAL_ALIGN - (this.size % EXTERNAL_ALIGN)) % EXTERNAL_ALIGN;
    if (pad) this.write(new Uint8Array(pad));
    const offset = this.size;
    this.write(data);
    const { raw_data: _r, float_data: _f, int32_data: _i, int64_data: _l, double_data: _d, uint64_data: _u, ...rest } = t;
    return {
      ...rest,
      data_location: 1,
      external_data: [
        { key: 'location', value: this.location },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(data.byteLength) },
      ],
    };
  }

  commit(): void {
    const fd = this.fd!;
    this.fd = undefined;
    syncAndClose(fd, this.tmp, this.target);
    renameOver(this.tmp, this.target);
    this.committed = true;
    untrackTemp(this.tmp);
  }

  /** Removes the temp file, or the data file itself once committed. */
  abort(): void {
    closeQuietly(this.fd);
    this.fd = undefined;
    rmSync(this.committed ? this.target : this.tmp, { force: true });
    untrackTemp(this.tmp);
  }

  private write(buf: Uint8Array): void {
    writeAllAt(this.fd!, buf, null, this.tmp, this.target);
    this.size += buf.byteLength;
  }
}
