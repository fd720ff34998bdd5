import { DataType } from './dtype.js';
import { attrInt, findAttribute, type GraphIndex } from './graph.js';
import { addConstant } from './linear-weights.js';
import type { Model } from './model.js';
import { int64ToNumber, type NodeProto } from './onnx-schema.js';

/**
 * Reads a 1-D int64 shape vector (the second input of Reshape or Expand) element by element, as
 * far as it can be known without running the graph: a constant (with the place it is stored, so
 * a rewrite can change it), a dimension of another tensor (`Gather(Shape(x), i)`, times a
 * constant), or unknown. Both forms of Reshape targets seen in practice are covered: one int64
 * initializer (pare's builders) and the Shape → Gather → Unsqueeze → Concat chains of PyTorch's
 * exporter, including its `Where(Equal(s, -1), 1, s)` wrapping of Expand shapes.
 */

/** Where a constant element is stored: input `input` of `consumer` reads tensor `tensor`, element `index`. */
export interface ConstantSource {
  consumer: NodeProto;
  input: number;
  tensor: string;
  index: number;
}

export type ShapeElement =
  | { kind: 'const'; value: number; source?: ConstantSource }
  | { kind: 'dim'; tensor: string; axis: number; factor: number }
  | { kind: 'unknown' };

/** The int values (empty for other types) and dims of an initializer or Constant output; undefined when not constant. */
export function constantInts(model: Model, index: GraphIndex, name: string): { values: number[]; dims: number[]; dataType: number } | undefined {
  if (model.hasInitializer(name)) {
    const t = model.tensor(name);
    return { values: intsOf(t.dataType, t.data), dims: t.dims, dataType: t.dataType };
  }
  const p = index.producer.get(name);
  if (!p || p.op_type !== 'Constant') return undefined;
  const value = findAttribute(p, 'value');
  if (value?.t) {
    const t = model.tensor(value.t);
    return { values: intsOf(t.dataType, t.data), dims: t.dims, dataType: t.dataType };
  }
  const ints = findAttribute(p, 'value_ints');
  if (ints) return { values: (ints.ints ?? []).map(int64ToNumber), dims: [(ints.ints ?? []).length], dataType: DataType.INT64 };
  const one = findAttribute(p, 'value_int');
  if (one) return { values: [int64ToNumber(one.i)], dims: [], dataType: DataType.INT64 };
  return undefined;
}

function intsOf(dataType: number, data: Uint8Array): number[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: number[] = [];
  if (dataType === DataType.INT64) for (let i = 0; i + 8 <= data.byteLength; i += 8) out.push(Number(view.getBigInt64(i, true)));
  else if (dataType === DataType.INT32) for (let i = 0; i + 4 <= data.byteLength; i += 4) out.push(view.getInt32(i, true));
  else return [];
  return out;
}

/** The elements of shape vector `name`, or undefined when its structure is not one this reader knows. */
export function shapeElements(model: Model, index: GraphIndex, name: string, consumer?: NodeProto, input = 1): ShapeElement[] | undefined {
  const c = constantInts(model, index, name);
  if (c) return c.values.map((value, i) => ({ kind: 'const', value, source: consumer ? { consumer, input, tensor: name, index: i } : undefined }));
  const p = index.producer.get(name);
  if (!p) return undefined;
  const ins = p.input ?? [];
  switch (p.op_type) {
    case 'Concat': {
      const parts = ins.map((x, i) => shapeElements(model, index, x, p, i));
      return parts.every((x) => x !== undefined) ? parts.flat() : undefined;
    }
    case 'Unsqueeze':
    case 'Cast':
    case 'Identity':
      return shapeElements(model, index, ins[0]!, p, 0);
    case 'Reshape': {
      const target = constantInts(model, index, ins[1]!);
      return target && target.values.length === 1 && target.values[0] === -1 ? shapeElements(model, index, ins[0]!, p, 0) : undefined;
    }
    case 'Where': // PyTorch's expand(): Where(Equal(s, -1), ones, s) only replaces -1 entries
      return shapeElements(model, index, ins[2]!, p, 2);
    case 'Gather': {
      const from = index.producer.get(ins[0]!);
      const at = constantInts(model, index, ins[1]!);
      if (!from || from.op_type !== 'Shape' || !at || at.values.length !== 1 || attrInt(p, 'axis', 0) !== 0) return [{ kind: 'unknown' }];
      const start = attrInt(from, 'start', 0);
      const axis = at.values[0]!;
      return [axis >= 0 && start >= 0 ? { kind: 'dim', tensor: from.input![0]!, axis: axis + start, factor: 1 } : { kind: 'unknown' }];
    }
    case 'Mul': {
      const [a, b] = [shapeElements(model, index, ins[0]!, p, 0), shapeElements(model, index, ins[1]!, p, 1)];
      if (a?.length !== 1 || b?.length !== 1) return undefined;
      const [x, y] = [a[0]!, b[0]!];
      if (x.kind === 'const' && y.kind === 'const') return [{ kind: 'const', value: x.value * y.value }];
      if (x.kind === 'dim' && y.kind === 'const') return [{ ...x, factor: x.factor * y.value }];
      if (y.kind === 'dim' && x.kind === 'const') return [{ ...y, factor: y.factor * x.value }];
      return [{ kind: 'unknown' }];
    }
    default:
      return undefined;
  }
}

/** One constant element to change: where it is stored and its new value. */
export interface ConstantEdit {
  source: ConstantSource;
  value: number;
}

/**
 * A graph built from safetensors names its shape constants `const_i64_N` (the builder's convention,
 * which tells the safetensors writer they are no checkpoint tensors); elsewhere the name derives
 * from the node that reads it.
 */
function constantName(model: Model, node: NodeProto, dataType: number): string {
  if (model.format !== 'safetensors') return `${node.name ?? node.output![0]}/heads_shape`;
  const prefix = dataType === DataType.INT32 ? 'const_i32_' : 'const_i64_';
  let n = (model.graph.initializer ?? []).length;
  while (model.hasInitializer(`${prefix}${n}`)) n++;
  return `${prefix}${n}`;
}

/**
 * Apply edits: each (node, input) gets a fresh initializer with the changed values, so a constant
 * shared with other nodes or layers keeps its old value there. Old constants left unread are
 * dropped later by removeUnused.
 */
export function applyConstantEdits(model: Model, index: GraphIndex, edits: ConstantEdit[]): void {
  const byInput = new Map<NodeProto, Map<number, ConstantEdit[]>>();
  for (const e of edits) {
    const inputs = byInput.get(e.source.consumer) ?? new Map<number, ConstantEdit[]>();
    inputs.set(e.source.input, [...(inputs.get(e.source.input) ?? []), e]);
    byInput.set(e.source.consumer, inputs);
  }
  for (const [node, inputs] of byInput) {
    for (const [i, list] of inputs) {
      const old = constantInts(model, index, list[0]!.source.tensor)!;
      const values = [...old.values];
      for (const e of list) values[e.source.index] = e.value;
      const dataType = old.dataType === DataType.INT32 ? DataType.INT32 : DataType.INT64;
      node.input![i] = addConstant(model, constantName(model, node, dataType), dataType, old.dims, values);
    }
  }
}
