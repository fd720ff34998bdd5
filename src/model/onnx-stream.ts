import type { Type } from 'protobufjs';
import { writeFileAtomicStream } from '../util/atomic-write.js';
import { GraphProtoType, ModelProtoType, TensorProtoType, type ModelProto, type TensorProto } from './onnx-schema.js';

/**
 * An ONNX file written field by field, never whole in memory. protobufjs writes a message's fields
 * in field-number order, each nested message as tag, length, bytes; this writer emits the same
 * bytes in three layers: ModelProto fields 1–6, then graph (7), then 8 and up; inside the graph,
 * node (1) and name (2), then each initializer (5), then 10 and up; inside an initializer, fields
 * 1–8, then raw_data (9) read from where the tensor lives just before it is written, then 10 and
 * up. Everything but raw_data is encoded by protobufjs itself. A length prefix needs the size of
 * what follows, so sizes are summed first (raw_data's from the tensor's type and shape) and the
 * bytes written after: peak memory is one tensor, not the model.
 */

/** An initializer to write: its TensorProto without raw_data, and raw_data's length and reader when it has one. */
export interface StreamedTensor {
  proto: TensorProto;
  raw?: { length: number; read: () => Uint8Array };
}

const TAG_GRAPH = (7 << 3) | 2;
const TAG_INITIALIZER = (5 << 3) | 2;
const TAG_RAW_DATA = (9 << 3) | 2;

/** Writes `proto` (its graph's own initializer list ignored) with `initializers` as the graph's initializers to `path`, atomically; returns the bytes written. */
export function writeModelStreaming(path: string, proto: ModelProto, initializers: StreamedTensor[]): number {
  const graph = proto.graph ?? {};
  const modelHead = encodeFields(ModelProtoType, proto, (id) => id < 7);
  const modelTail = encodeFields(ModelProtoType, proto, (id) => id > 7);
  const graphHead = encodeFields(GraphProtoType, graph, (id) => id < 5);
  const graphTail = encodeFields(GraphProtoType, graph, (id) => id > 5);
  let graphSize = graphHead.byteLength + graphTail.byteLength;
  for (const t of initializers) graphSize += delimitedSize(tensorSize(t));

  return writeFileAtomicStream(path, (write) => {
    write(modelHead);
    write(Uint8Array.of(TAG_GRAPH, ...varint(graphSize)));
    write(graphHead);
    for (const t of initializers) {
      const parts = tensorParts(t);
      write(Uint8Array.of(TAG_INITIALIZER, ...varint(parts.size)));
      write(parts.head);
      if (t.raw) {
        const data = t.raw.read();
        if (data.byteLength !== t.raw.length) throw new Error(`tensor '${t.proto.name}': read ${data.byteLength} bytes of raw_data, expected ${t.raw.length}`);
        write(Uint8Array.of(TAG_RAW_DATA, ...varint(data.byteLength)));
        write(data);
      }
      write(parts.tail);
    }
    write(graphTail);
    write(modelTail);
  });
}

/** The TensorProto's fields before and after raw_data, encoded; typed-field tensors (no raw) are all head. */
function tensorParts(t: StreamedTensor): { head: Uint8Array; tail: Uint8Array; size: number } {
  if (!t.raw) {
    const head = TensorProtoType.encode(t.proto as never).finish();
    return { head, tail: new Uint8Array(0), size: head.byteLength };
  }
  const { raw_data: _r, ...proto } = t.proto;
  const head = encodeFields(TensorProtoType, proto, (id) => id < 9);
  const tail = encodeFields(TensorProtoType, proto, (id) => id > 9);
  return { head, tail, size: head.byteLength + delimitedSize(t.raw.length) + tail.byteLength };
}

function tensorSize(t: StreamedTensor): number {
  return tensorParts(t).size;
}

/** The message's fields whose numbers `keep` accepts, as protobufjs encodes them. */
function encodeFields(type: Type, message: object, keep: (id: number) => boolean): Uint8Array {
  const part: Record<string, unknown> = {};
  for (const f of type.fieldsArray) if (keep(f.id) && Object.hasOwn(message, f.name)) part[f.name] = (message as Record<string, unknown>)[f.name];
  return type.encode(part).finish();
}

/** A one-byte tag, the length as a varint, then `length` bytes. */
function delimitedSize(length: number): number {
  return 1 + varint(length).length + length;
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}
