import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { byteLength, elementCount } from '../../src/model/dtype.js';
import type { Model } from '../../src/model/model.js';
import { int64ToNumber, ModelProtoType, type ModelProto, type NodeProto, type TensorProto } from '../../src/model/onnx-schema.js';

/**
 * pare's writeOnnx before it streamed (commit ee4f083), as a plain transcription: the whole
 * ModelProto is built with every tensor's bytes in it and encoded by protobufjs in one buffer; with
 * external data, tensors of at least `threshold` bytes (and large Constant nodes, as initializers)
 * go to `<file>.data` at 64-byte-aligned offsets. The expected bytes for the streaming writer.
 */
export function writeOnnxInMemory(model: Model, path: string, opts: { externalData?: boolean; externalThreshold?: number } = {}): void {
  const threshold = opts.externalThreshold ?? 1024;
  const external = opts.externalData ?? estimateBytes(model) > 2 ** 31 - 1 - 64 * 2 ** 20;
  const graph = model.graph;
  mkdirSync(dirname(path), { recursive: true });
  if (!external) {
    const initializer = (graph.initializer ?? []).map((t) => (t.data_location === 1 ? inlineTensor(model, t) : t));
    writeFileSync(path, ModelProtoType.encode({ ...model.proto, graph: { ...graph, initializer } } as never).finish());
    return;
  }
  const location = `${basename(path)}.data`;
  const chunks: Uint8Array[] = [];
  let size = 0;
  const add = (t: TensorProto, data: Uint8Array): TensorProto => {
    const pad = (64 - (size % 64)) % 64;
    chunks.push(new Uint8Array(pad), data);
    const offset = size + pad;
    size = offset + data.byteLength;
    const { raw_data: _r, float_data: _f, int32_data: _i, int64_data: _l, double_data: _d, uint64_data: _u, ...rest } = t;
    return {
      ...rest,
      data_location: 1,
      external_data: [
        { key: 'location', value: location },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(data.byteLength) },
      ],
    };
  };
  const initializer = (graph.initializer ?? []).map((t) => {
    const host = model.tensor(t);
    return host.data.byteLength >= threshold ? add(t, host.data) : t.data_location === 1 ? inlineTensor(model, t) : t;
  });
  const node: NodeProto[] = [];
  for (const n of graph.node ?? []) {
    const value = constantTensor(n);
    if (value && byteLength(value.data_type ?? 0, elementCount((value.dims ?? []).map(int64ToNumber))) >= threshold) {
      const t = { ...value, name: n.output![0] };
      initializer.push(add(t, model.tensor(t).data));
    } else {
      node.push(n);
    }
  }
  writeFileSync(join(dirname(path), location), Buffer.concat(chunks));
  writeFileSync(path, ModelProtoType.encode({ ...model.proto, graph: { ...graph, initializer, node } } as ModelProto as never).finish());
}

function inlineTensor(model: Model, t: TensorProto): TensorProto {
  const { external_data: _e, data_location: _l, ...rest } = t;
  return { ...rest, raw_data: model.tensor(t).data };
}

function constantTensor(n: NodeProto): TensorProto | undefined {
  if (n.op_type !== 'Constant' || (n.domain ?? '') !== '') return undefined;
  return n.attribute?.find((x) => x.name === 'value')?.t;
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
