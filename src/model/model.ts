/**
 * src/model — layer 2 (above util): the in-memory Model and everything that reads or writes a
 * checkpoint's graph and tensors: ONNX and safetensors I/O, the Checkpoint a run opens once, graph
 * builders, the linear-layer query, graph edits and the description of a model's inputs (io.ts).
 * Imports only util/ and the foundation.
 */
import { closeSync, openSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { UserError } from '../errors.js';
import { readFully, SpillFile } from '../util/spill-file.js';
import { byteLength, DataType, dtypeName, elementCount } from './dtype.js';
import { removeValueInfo } from './graph-edit.js';
import { int64ToBigInt, int64ToNumber, type GraphProto, type Int64, type ModelProto, type TensorProto } from './onnx-schema.js';

/** A tensor as the passes see it: type, shape and little-endian raw bytes. */
export interface HostTensor {
  name: string;
  dataType: number;
  dims: number[];
  data: Uint8Array;
}

/**
 * One in-memory form for every checkpoint: an ONNX ModelProto whose initializers are read on demand
 * (inline raw_data, typed fields, or external data files opened lazily), plus where it came from.
 */
export class Model {
  private initIndex: Map<string, number> | undefined;
  /** open external data files and the spill file; shared with the models derive() makes */
  private storage: Storage = { fds: new Map(), spilled: new WeakMap() };

  constructor(
    readonly proto: ModelProto,
    /** the file the model was read from; external data locations resolve against its folder */
    readonly path: string,
    readonly format: 'onnx' | 'safetensors' = 'onnx',
  ) {
    if (!proto.graph) throw new UserError(`${path}: ONNX model has no graph`);
  }

  get graph(): GraphProto {
    return this.proto.graph!;
  }

  get dir(): string {
    return dirname(this.path);
  }

  /**
   * A model over `proto` (a sub-graph of this one) that reads tensors as this one does: same folder,
   * open files and spill file. Closing is this model's job; never close the derived one.
   */
  derive(proto: ModelProto): Model {
    const m = new Model(proto, this.path, this.format);
    m.storage = this.storage;
    return m;
  }

  /** The opset version imported for `domain` ('' is the default ONNX domain), or 0. */
  opset(domain = ''): number {
    for (const o of this.proto.opset_import ?? []) {
      const d = o.domain ?? '';
      if (d === domain || (domain === '' && d === 'ai.onnx')) return int64ToNumber(o.version);
    }
    return 0;
  }

  initializer(name: string): TensorProto | undefined {
    const i = this.index().get(name);
    return i === undefined ? undefined : this.graph.initializer![i];
  }

  hasInitializer(name: string): boolean {
    return this.index().has(name);
  }

  /** Read an initializer (or any TensorProto of this model, e.g. a Constant's value) as raw bytes. */
  tensor(nameOrProto: string | TensorProto): HostTensor {
    const t = typeof nameOrProto === 'string' ? this.initializer(nameOrProto) : nameOrProto;
    if (!t) throw new Error(`no initializer named '${String(nameOrProto)}'`);
    const dims = (t.dims ?? []).map(int64ToNumber);
    const dataType = t.data_type ?? 0;
    return { name: t.name ?? '', dataType, dims, data: this.tensorBytes(t, dataType, dims) };
  }

  /**
   * Streaming mode: initializers of at least `threshold` bytes set from now on are appended to the
   * file `path` and read back on demand, so a pass's rewritten weights cost disk rather than memory.
   * The file is this model's alone and is deleted by close().
   */
  spillTo(path: string, threshold: number): void {
    if (this.storage.spill) throw new Error(`${this.path}: already spilling to ${this.storage.spill.file.path}`);
    this.storage.spill = { file: new SpillFile(path), threshold };
  }

  /** Replace or add an initializer. The new tensor is stored inline (or in the spill file); the old one's bytes are dropped. */
  setInitializer(t: HostTensor): void {
    const expected = byteLength(t.dataType, elementCount(t.dims));
    if (t.data.byteLength !== expected) {
      throw new Error(`setInitializer ${t.name}: ${t.data.byteLength} bytes for ${dtypeName(t.dataType)}[${t.dims.join(',')}], expected ${expected}`);
    }
    const proto: TensorProto = { name: t.name, data_type: t.dataType, dims: [...t.dims], raw_data: t.data };
    const spill = this.storage.spill;
    if (spill && t.data.byteLength >= spill.threshold) {
      const offset = spill.file.append(t.data);
      delete proto.raw_data;
      proto.data_location = 1; // external: every reader goes through tensor(), which finds it in the spill file
      this.storage.spilled.set(proto, { offset, length: t.data.byteLength });
    }
    const inits = (this.graph.initializer ??= []);
    const i = this.index().get(t.name);
    if (i === undefined) {
      this.index().set(t.name, inits.length);
      inits.push(proto);
    } else {
      inits[i] = proto;
    }
    declareAs(this.graph, t);
  }

  removeInitializer(name: string): void {
    const inits = this.graph.initializer ?? [];
    const i = this.index().get(name);
    if (i === undefined) return;
    inits.splice(i, 1);
    this.initIndex = undefined;
    // an initializer listed as a graph input (IR < 4 style) goes with it
    removeValueInfo(this.graph, 'input', name);
  }

  close(): void {
    const { fds, spill } = this.storage;
    for (const fd of fds.values()) closeSync(fd);
    fds.clear();
    if (spill) {
      spill.file.remove();
      this.storage.spill = undefined;
    }
  }

  private index(): Map<string, number> {
    if (!this.initIndex) {
      this.initIndex = new Map();
      (this.graph.initializer ?? []).forEach((t, i) => this.initIndex!.set(t.name ?? '', i));
    }
    return this.initIndex;
  }

  private tensorBytes(t: TensorProto, dataType: number, dims: number[]): Uint8Array {
    const count = elementCount(dims);
    const spilled = this.storage.spilled.get(t);
    if (spilled) {
      const spill = this.storage.spill;
      if (!spill) throw new Error(`${this.path}: tensor '${t.name}' was spilled and the model is closed`);
      return spill.file.read(spilled.offset, spilled.length, `tensor '${t.name}'`);
    }
    if (t.data_location === 1) return this.readExternal(t, byteLength(dataType, count));
    if (t.raw_data && t.raw_data.byteLength > 0) return t.raw_data;
    return typedFieldsToBytes(t, dataType, count);
  }

  private readExternal(t: TensorProto, expected: number): Uint8Array {
    const info = new Map((t.external_data ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = info.get('location');
    if (!location) throw new UserError(`${this.path}: tensor '${t.name}' is external but names no location`);
    if (isAbsolute(location) || normalize(location).startsWith('..')) {
      throw new UserError(`${this.path}: tensor '${t.name}' external location '${location}' must be a relative path inside the model's folder`);
    }
    const offset = Number(info.get('offset') ?? 0);
    const length = info.has('length') ? Number(info.get('length')) : expected;
    if (length !== expected) {
      throw new UserError(`${this.path}: tensor '${t.name}' external length ${length} does not match its shape (${expected} bytes)`);
    }
    const file = join(this.dir, location);
    let fd = this.storage.fds.get(file);
    if (fd === undefined) {
      try {
        fd = openSync(file, 'r');
      } catch {
        throw new UserError(`${file}: external data file of ${this.path} cannot be opened`);
      }
      this.storage.fds.set(file, fd);
    }
    return readFully(fd, new Uint8Array(length), offset, () => new UserError(`${file}: external data ends before tensor '${t.name}' (offset ${offset}, length ${length})`));
  }
}

/**
 * Every other declaration of an initializer's name follows its new type and shape: its graph-input
 * entry (IR < 4 models list weights as inputs, and ONNX Runtime refuses an initializer whose shape
 * differs from it) and any value_info entry.
 */
function declareAs(graph: GraphProto, t: HostTensor): void {
  for (const v of [...(graph.input ?? []), ...(graph.value_info ?? [])]) {
    if (v.name !== t.name) continue;
    v.type = { tensor_type: { elem_type: t.dataType, shape: { dim: t.dims.map((d) => ({ dim_value: d })) } } };
  }
}

interface Storage {
  fds: Map<string, number>;
  spill?: { file: SpillFile; threshold: number };
  /** where each spilled initializer's bytes sit in the spill file */
  spilled: WeakMap<TensorProto, { offset: number; length: number }>;
}

/** Tensors stored in the typed repeated fields (float_data, int32_data, ...) as raw little-endian bytes. */
function typedFieldsToBytes(t: TensorProto, dataType: number, count: number): Uint8Array {
  const out = new Uint8Array(byteLength(dataType, count));
  const view = new DataView(out.buffer);
  const need = (field: unknown[] | undefined, n: number, fieldName: string): unknown[] => {
    const f = field ?? [];
    if (f.length !== n) throw new UserError(`tensor '${t.name}': ${fieldName} holds ${f.length} values, its shape needs ${n}`);
    return f;
  };
  switch (dataType) {
    case DataType.FLOAT: {
      const f = need(t.float_data, count, 'float_data') as number[];
      for (let i = 0; i < count; i++) view.setFloat32(i * 4, f[i], true);
      break;
    }
    case DataType.COMPLEX64: {
      const f = need(t.float_data, count * 2, 'float_data') as number[];
      for (let i = 0; i < count * 2; i++) view.setFloat32(i * 4, f[i], true);
      break;
    }
    case DataType.DOUBLE: {
      const f = need(t.double_data, count, 'double_data') as number[];
      for (let i = 0; i < count; i++) view.setFloat64(i * 8, f[i], true);
      break;
    }
    case DataType.INT64: {
      const f = need(t.int64_data, count, 'int64_data') as Int64[];
      for (let i = 0; i < count; i++) view.setBigInt64(i * 8, BigInt.asIntN(64, int64ToBigInt(f[i])), true);
      break;
    }
    case DataType.UINT64:
    case DataType.UINT32: {
      const f = need(t.uint64_data, count, 'uint64_data') as Int64[];
      for (let i = 0; i < count; i++) {
        if (dataType === DataType.UINT32) view.setUint32(i * 4, int64ToNumber(f[i]), true);
        else view.setBigUint64(i * 8, BigInt.asUintN(64, int64ToBigInt(f[i])), true);
      }
      break;
    }
    case DataType.INT32:
    case DataType.INT16:
    case DataType.UINT16:
    case DataType.INT8:
    case DataType.UINT8:
    case DataType.BOOL:
    case DataType.FLOAT16:
    case DataType.BFLOAT16: {
      const f = need(t.int32_data, count, 'int32_data') as number[];
      const bytes = out.byteLength / Math.max(count, 1);
      for (let i = 0; i < count; i++) {
        if (bytes === 4) view.setInt32(i * 4, f[i], true);
        else if (bytes === 2) view.setUint16(i * 2, f[i] & 0xffff, true);
        else out[i] = f[i] & 0xff;
      }
      break;
    }
    case DataType.INT4:
    case DataType.UINT4: {
      // int32_data holds one packed byte (two elements) per entry
      const f = need(t.int32_data, out.byteLength, 'int32_data') as number[];
      for (let i = 0; i < out.byteLength; i++) out[i] = f[i] & 0xff;
      break;
    }
    default:
      if (count === 0) break;
      throw new UserError(`tensor '${t.name}': data type ${dtypeName(dataType)} stored without raw_data is not supported`);
  }
  return out;
}
