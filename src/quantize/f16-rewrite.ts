import { DataType } from '../model/dtype.js';
import { attr, findAttribute, makeNode } from '../model/graph.js';
import { insertBefore } from '../model/graph-edit.js';
import { removeUnused, uniqueInitializerName } from '../model/linear-weights.js';
import type { Model } from '../model/model.js';
import { int64ToNumber, type NodeProto, type TensorProto } from '../model/onnx-schema.js';
import { fromFloat32, toFloat32 } from '../model/pack.js';
import { type F16Plan, type Precision, TYPE_AGNOSTIC_INPUTS } from './f16-plan.js';

/**
 * Applies an F16Plan: float16 nodes read float16 weights (converted in place when every reader is
 * float16, else a `_fp16` copy) and float16 activations; wherever a value crosses between
 * precisions a Cast is inserted once, right before its first reader:
 *   x (float32) -> node (float16)   becomes   Cast(x, to=FLOAT16) -> node
 * The graph's float inputs and outputs take `io`'s type.
 */

export interface F16Rewrite {
  casts: number;
  /** bytes of the float initializers before, and of what replaced them after */
  bytesBefore: number;
  bytesAfter: number;
}

const ELEM: Record<Precision, number> = { float16: DataType.FLOAT16, float32: DataType.FLOAT };

export function applyFloat16(model: Model, plan: F16Plan, io: Precision): F16Rewrite {
  const graph = model.graph;
  const producer = new Map<string, NodeProto>();
  const constants = new Map<string, TensorProto>();
  for (const t of graph.initializer ?? []) constants.set(t.name ?? '', t);
  for (const n of graph.node ?? []) {
    for (const o of n.output ?? []) producer.set(o, n);
    const value = n.op_type === 'Constant' ? findAttribute(n, 'value')?.t : undefined;
    if (value) constants.set(n.output![0]!, value);
  }
  const graphInputs = new Set((graph.input ?? []).map((v) => v.name ?? ''));
  const precisionOf = (value: string): Precision | undefined => {
    if (!plan.float.has(value)) return plan.half.has(value) ? 'float16' : undefined;
    if (graphInputs.has(value) && !constants.has(value)) return io;
    const p = producer.get(value);
    return p ? plan.nodes.get(p)?.precision : undefined;
  };

  // which float16 nodes read each float constant: one read by float16 nodes only is converted in place
  const readers = new Map<string, NodeProto[]>();
  for (const n of graph.node ?? []) for (const i of n.input ?? []) if (i && constants.has(i) && plan.float.has(i)) readers.set(i, [...(readers.get(i) ?? []), n]);
  const graphOutputs = new Set((graph.output ?? []).map((v) => v.name ?? ''));
  const halfOnly = (name: string) =>
    graph.initializer?.some((t) => t.name === name) && !graphOutputs.has(name) && (readers.get(name) ?? []).every((n) => plan.nodes.get(n)?.precision === 'float16' && !TYPE_AGNOSTIC_INPUTS.has(n.op_type ?? ''));

  const result: F16Rewrite = { casts: 0, bytesBefore: 0, bytesAfter: 0 };
  const halfConstants = new Map<string, string>();
  const halfConstant = (name: string): string => {
    const done = halfConstants.get(name);
    if (done) return done;
    const host = model.tensor(constants.get(name)!);
    const count = host.dims.reduce((a, b) => a * b, 1);
    const data = fromFloat32(DataType.FLOAT16, toFloat32(host.dataType, host.data, count));
    const inPlace = halfOnly(name);
    const target = inPlace ? name : uniqueInitializerName(model, `${name}_fp16`);
    model.setInitializer({ name: target, dataType: DataType.FLOAT16, dims: host.dims, data });
    result.bytesBefore += inPlace ? host.data.byteLength : 0;
    result.bytesAfter += data.byteLength;
    halfConstants.set(name, target);
    return target;
  };

  const casts = new Map<string, string>();
  const castOf = (value: string, to: Precision, before: NodeProto): string => {
    const key = `${value}\u0000${to}`;
    const done = casts.get(key);
    if (done) return done;
    const out = `${value}/${to}`;
    insertBefore(graph, before, [makeNode('Cast', [value], [out], `${value}/Cast_${to}`, [attr.int('to', ELEM[to])])]);
    casts.set(key, out);
    result.casts++;
    return out;
  };

  for (const n of [...(graph.node ?? [])]) {
    const p = plan.nodes.get(n);
    if (!p) continue;
    const input = n.input ?? [];
    if (!TYPE_AGNOSTIC_INPUTS.has(n.op_type ?? '')) {
      for (let i = 0; i < input.length; i++) {
        const v = input[i]!;
        if (!v || !plan.float.has(v)) continue;
        if (constants.has(v) && !graphInputs.has(v)) {
          if (p.precision === 'float16') input[i] = halfConstant(v);
          continue;
        }
        const from = precisionOf(v);
        if (from && from !== p.precision) input[i] = castOf(v, p.precision, n);
      }
    }
    if (n.op_type === 'Cast' && p.precision === 'float16') {
      const to = findAttribute(n, 'to');
      if (to && int64ToNumber(to.i) === DataType.FLOAT) to.i = DataType.FLOAT16;
    }
  }

  result.casts += retypeGraphIo(model, plan, io, constants, precisionOf);
  // intermediate type annotations of converted values would now be wrong: ONNX Runtime infers them again
  graph.value_info = (graph.value_info ?? []).filter((v) => !plan.float.has(v.name ?? ''));
  removeUnused(model);
  return result;
}

/** The graph's float inputs and outputs in io's type: a Cast where the value inside differs. Returns the Casts added. */
function retypeGraphIo(model: Model, plan: F16Plan, io: Precision, constants: Map<string, TensorProto>, precisionOf: (value: string) => Precision | undefined): number {
  const graph = model.graph;
  let casts = 0;
  for (const v of graph.input ?? []) {
    if (plan.float.has(v.name ?? '') && !constants.has(v.name ?? '') && v.type?.tensor_type) v.type.tensor_type.elem_type = ELEM[io];
  }
  for (const v of graph.output ?? []) {
    const name = v.name ?? '';
    if (!plan.float.has(name)) continue;
    const inside = precisionOf(name);
    if (inside && inside !== io) {
      // the producer writes `${name}/${inside}`; its readers follow; a Cast makes the output itself
      const renamed = `${name}/${inside}`;
      for (const n of graph.node ?? []) {
        const ins = n.input ?? [];
        for (let i = 0; i < ins.length; i++) if (ins[i] === name) ins[i] = renamed;
        const outs = n.output ?? [];
        for (let i = 0; i < outs.length; i++) if (outs[i] === name) outs[i] = renamed;
      }
      graph.node!.push(makeNode('Cast', [renamed], [name], `${name}/Cast_${io}`, [attr.int('to', ELEM[io])]));
      casts++;
    }
    if (v.type?.tensor_type) v.type.tensor_type.elem_type = ELEM[io];
  }
  return casts;
}
