import { z } from 'zod';
import { UserError } from '../errors.js';
import { dequantize } from '../model/dequantize.js';
import { DataType } from '../model/dtype.js';
import { attr, attrInt, GraphIndex, makeNode } from '../model/graph.js';
import { redirectReaders, removeNodes, removeValueInfo, replaceNode } from '../model/graph-edit.js';
import { removeUnused, uniqueInitializerName } from '../model/linear-weights.js';
import type { Model } from '../model/model.js';
import type { NodeProto } from '../model/onnx-schema.js';
import { toFloat32 } from '../model/pack.js';
import { quantizedLayers, type QuantizedLayer } from '../model/quantized-layers.js';
import { definePass, type LayerStat } from '../pass/pass.js';

/**
 * Back to float: an already-quantized model's integer layers become float layers on float
 * initializers, so passes that need float weights can run on it.
 *
 *   QLinearConv(x_q, s_x, z_x, W_q, s_W, z_W, s_y, z_y, B_q)
 *     -> QuantizeLinear(Conv(DequantizeLinear(x_q, s_x, z_x), (W_q − z_W)·s_W, B_q·s_x·s_W), s_y, z_y)
 *   QLinearMatMul likewise with MatMul;
 *   DequantizeLinear(constant q, s, z) -> the float constant (q − z)·s         (QDQ weights and int32 biases)
 *   DequantizeLinear(f(QuantizeLinear(x, s, z)), s, z) -> f(Clip(x, (q_min − z)·s, (q_max − z)·s))
 *       for f a chain of ops that move values without computing new ones (MaxPool, Reshape, Transpose, ...)
 *
 * The last rule drops the rounding of activations and keeps their saturation (a uint8 output with
 * zero point 0 is the fused Relu of the quantizer), so the float model computes what the quantized
 * one does without activation rounding noise. Other integer ops (QLinearAdd, QLinearGlobalAveragePool,
 * ...) are left as they are and named in a warning.
 */

const DequantizeParams = z.strictObject({});

/** Ops that pass values through unchanged in value (they commute with per-tensor quantization). */
const MOVES = new Set(['MaxPool', 'Reshape', 'Transpose', 'Flatten', 'Squeeze', 'Unsqueeze', 'Identity']);

function floatConstant(model: Model, name: string, dims: number[], values: Float32Array): string {
  const unique = uniqueInitializerName(model, name);
  model.setInitializer({ name: unique, dataType: DataType.FLOAT, dims, data: new Uint8Array(values.buffer) });
  return unique;
}

/** A QLinearConv or QLinearMatMul as DequantizeLinear → float op → QuantizeLinear; bytes before and after. */
function rewriteQOperator(model: Model, q: QuantizedLayer): LayerStat {
  const t0 = performance.now();
  const node = q.node;
  const [x, xs, xz, w, ws, wz, ys, yz, b] = node.input ?? [];
  const conv = node.op_type === 'QLinearConv';
  for (const [role, name] of [['weight', w], ['weight scale', ws], ['input scale', xs]] as const) {
    if (!name || !model.hasInitializer(name)) throw new UserError(`quantize.dequantize: ${node.op_type} '${q.name}' has a computed ${role}; only constant quantized weights can be turned into float`);
  }
  const wt = model.tensor(w!);
  const W = dequantize(wt, model.tensor(ws!), wz ? model.tensor(wz) : undefined, conv ? 0 : 1, 0);
  let bytesBefore = wt.data.byteLength;
  const base = q.name.replace(/\.weight_quantized$|_quantized$/, '');
  const inputs = [`${node.output![0]}/float_input`, floatConstant(model, `${base}.weight`, wt.dims, W)];
  if (conv && b) {
    const bt = model.tensor(b);
    const bq = toFloat32(bt.dataType, bt.data, bt.dims[0]);
    const sx = toFloat32(model.tensor(xs!).dataType, model.tensor(xs!).data, 1)[0]!;
    const sw = toFloat32(model.tensor(ws!).dataType, model.tensor(ws!).data);
    // the bias is stored in units of s_x · s_W (per output channel)
    inputs.push(floatConstant(model, `${base}.bias`, bt.dims, Float32Array.from(bq, (v, c) => v * Math.fround(sx * sw[sw.length > 1 ? c : 0]!))));
    bytesBefore += bt.data.byteLength;
  }
  const floatOut = `${node.output![0]}/float`;
  const attributes = conv ? (node.attribute ?? []) : [];
  replaceNode(model.graph, node, [
    makeNode('DequantizeLinear', [x!, xs!, ...(xz ? [xz] : [])], [inputs[0]!], `${node.name || base}/DequantizeLinear`),
    makeNode(conv ? 'Conv' : 'MatMul', inputs, [floatOut], node.name || base, attributes),
    makeNode('QuantizeLinear', [floatOut, ys!, ...(yz ? [yz] : [])], [node.output![0]!], `${node.name || base}/QuantizeLinear`),
  ]);
  return { name: q.name, kind: conv ? 'conv' : 'matmul', shape: q.shape, ms: performance.now() - t0, bytes_before: bytesBefore, bytes_after: W.length * 4 + (conv && b ? model.tensor(inputs[2]!).data.byteLength : 0) };
}

/** Every DequantizeLinear of constants (weights, biases) becomes the float constant it computes. */
function foldConstantDequantize(model: Model): number {
  const folded = new Set<NodeProto>();
  for (const n of model.graph.node ?? []) {
    if (n.op_type !== 'DequantizeLinear' || !(n.input ?? []).every((i) => !i || model.hasInitializer(i))) continue;
    const [x, s, zp] = n.input!;
    const t = model.tensor(x!);
    const values = dequantize(t, model.tensor(s!), zp ? model.tensor(zp) : undefined, attrInt(n, 'axis', 1), attrInt(n, 'block_size', 0));
    model.setInitializer({ name: n.output![0]!, dataType: DataType.FLOAT, dims: t.dims, data: new Uint8Array(values.buffer) });
    folded.add(n);
  }
  removeNodes(model.graph, (n) => folded.has(n));
  return folded.size;
}

function sameConstant(model: Model, a: string | undefined, b: string | undefined): boolean {
  if ((a ?? '') === (b ?? '')) return true;
  if (!a || !b || !model.hasInitializer(a) || !model.hasInitializer(b)) return false;
  const ta = model.tensor(a);
  const tb = model.tensor(b);
  return ta.dataType === tb.dataType && Buffer.from(ta.data).equals(Buffer.from(tb.data));
}

/** QuantizeLinear → moves → DequantizeLinear with the same scale and zero point, as Clip → moves. Returns how many. */
function removeActivationRounding(model: Model): number {
  let removed = 0;
  let index = new GraphIndex(model.graph);
  const outputs = new Set((model.graph.output ?? []).map((v) => v.name));
  for (const q of [...(model.graph.node ?? [])]) {
    if (q.op_type !== 'QuantizeLinear' || model.hasInitializer(q.input![0]!)) continue;
    const [x, s, zp] = q.input!;
    if (!s || !model.hasInitializer(s) || model.tensor(s).dims.length > 0 && model.tensor(s).dims.some((d) => d !== 1)) continue;
    // the values reached through moves, and the DequantizeLinears that end them
    const values: string[] = [];
    const ends: NodeProto[] = [];
    const walk = (v: string): boolean => {
      if (outputs.has(v)) return false;
      values.push(v);
      for (const r of index.consumers.get(v) ?? []) {
        if (r.op_type === 'DequantizeLinear' && r.input![0] === v && sameConstant(model, r.input![1], s) && sameConstant(model, r.input![2], zp)) ends.push(r);
        else if (MOVES.has(r.op_type ?? '') && r.input![0] === v && (r.output ?? []).length === 1) {
          if (!walk(r.output![0]!)) return false;
        } else return false;
      }
      return true;
    };
    if (!walk(q.output![0]!) || ends.length === 0) continue;
    const scale = toFloat32(model.tensor(s).dataType, model.tensor(s).data, 1)[0]!;
    const zt = zp ? model.tensor(zp) : undefined;
    const z = zt ? toFloat32(zt.dataType, zt.data, 1)[0]! : 0;
    const signed = zt?.dataType === DataType.INT8;
    const [lo, hi] = signed ? [-128, 127] : [0, 255];
    const [min, max] = [Math.fround((lo - z) * scale), Math.fround((hi - z) * scale)];
    const name = q.name || q.output![0]!;
    const clip =
      model.opset() >= 11
        ? makeNode('Clip', [x!, floatConstant(model, `${name}/clip_min`, [], Float32Array.of(min)), floatConstant(model, `${name}/clip_max`, [], Float32Array.of(max))], [q.output![0]!], `${name}/Clip`)
        : makeNode('Clip', [x!], [q.output![0]!], `${name}/Clip`, [attr.float('min', min), attr.float('max', max)]);
    replaceNode(model.graph, q, [clip]);
    for (const dq of ends) {
      if (outputs.has(dq.output![0]!)) replaceNode(model.graph, dq, [makeNode('Identity', [dq.input![0]!], [dq.output![0]!], dq.name ?? '')]);
      else {
        removeNodes(model.graph, (n) => n === dq);
        redirectReaders(model.graph, dq.output![0]!, dq.input![0]!);
      }
    }
    // these values were integers and are float now: their declared types go
    for (const v of values) removeValueInfo(model.graph, 'value_info', v);
    removed++;
    index = new GraphIndex(model.graph);
  }
  return removed;
}

export const dequantizePass = definePass({
  id: 'quantize.dequantize',
  summary: 'turn an already-quantized model (QLinearConv/QLinearMatMul, QDQ) back into float layers, for passes that need float weights',
  params: DequantizeParams,
  needsCalibration: () => ({ need: 'none' }),
  graphWide: true,
  changesLayers: true,
  async apply(model, _params, ctx) {
    const layers = quantizedLayers(model);
    const qoperators = layers.filter((l) => !l.op.endsWith('(QDQ)'));
    const hasDq = (model.graph.node ?? []).some((n) => n.op_type === 'DequantizeLinear');
    // a recipe written for int8 models also runs on float ones
    if (qoperators.length === 0 && !hasDq) return { layers: [], warnings: ['nothing to dequantize: the model has no quantized layers (QLinearConv, QLinearMatMul or DequantizeLinear weights)'] };
    const stats: LayerStat[] = [];
    for (const [i, q] of qoperators.entries()) {
      ctx.progress.layer(i, qoperators.length, q.name);
      stats.push(rewriteQOperator(model, q));
    }
    for (const q of layers.filter((l) => l.op.endsWith('(QDQ)'))) {
      const t = model.tensor(q.weight);
      stats.push({ name: q.name, kind: q.op.startsWith('Conv') ? 'conv' : 'matmul', shape: q.shape, ms: 0, bytes_before: t.data.byteLength, bytes_after: q.shape[0] * q.shape[1] * 4 });
    }
    foldConstantDequantize(model);
    removeActivationRounding(model);
    removeUnused(model);
    const left = new Map<string, number>();
    for (const n of model.graph.node ?? []) if (/^QLinear|Integer$/.test(n.op_type ?? '')) left.set(n.op_type!, (left.get(n.op_type!) ?? 0) + 1);
    const warnings = left.size ? [`left in integers (pare has no float rule for them): ${[...left].map(([op, n]) => `${op} ×${n}`).join(', ')}`] : [];
    return { layers: stats, warnings };
  },
});
