import { z } from 'zod';
import { UserError } from '../errors.js';
import { DataType } from '../model/dtype.js';
import { attr, makeNode } from '../model/graph.js';
import { replaceNode } from '../model/graph-edit.js';
import { addConstant, readWeight, removeUnused } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { transpose2d } from '../model/ndarray.js';
import { eachLayer } from '../pass/layer-loop.js';
import { definePass } from '../pass/pass.js';
import { dequantizeMatrix, quantizeMatrix } from './grid.js';
import { squaredError } from './rtn.js';

/**
 * W8A8 with per-token dynamic activation scales, the post-training scheme MobileLLM evaluates:
 * weights int8 symmetric per output channel (static), activations int8 symmetric per token
 * (each row of x gets scale max|x_row|/127 at run time). Emitted from standard ops ONNX Runtime
 * executes, so the integer product runs in MatMulInteger (S8S8):
 *
 *   MatMul(x, W) -> Cast(MatMulInteger(q(x), W_q)) · s_x · s_w
 *   s_x = max(ReduceMax(|x|, last axis), ε) / 127     one scale per token
 *   q(x) = Cast<int8>(Clip(Round(x / s_x), −127, 127))
 */

const W8a8Params = z.strictObject({
  epsilon: z.number().positive().default(1e-8).describe('floor of a token\'s max |x| so all-zero rows do not divide by zero'),
});

/** Rewrites one MatMul layer; `Wq` holds int8 codes [out, in] and `scales` one float per output. */
export function emitW8a8(model: Model, layer: LinearLayer, Wq: Int8Array, scales: Float32Array, epsilon: number): void {
  if (layer.kind !== 'matmul') throw new UserError(`quantize.w8a8: '${layer.name}' is a ${layer.kind}; per-token W8A8 rewrites MatMul layers only`);
  if (model.opset() < 13) throw new UserError(`quantize.w8a8: ${model.path} imports ONNX opset ${model.opset()}; this rewrite needs opset 13 or newer`);
  const p = `${layer.name}/w8a8`;
  const K = layer.inFeatures;
  const N = layer.outFeatures;
  const wName = addConstant(model, `${layer.name}.weight_int8`, DataType.INT8, [K, N], transpose2d(Float32Array.from(Wq), N, K));
  const swName = addConstant(model, `${layer.name}.weight_scale`, DataType.FLOAT, [N], scales);
  const epsName = addConstant(model, `${p}/epsilon`, DataType.FLOAT, [], [epsilon]);
  const qmaxName = addConstant(model, `${p}/qmax`, DataType.FLOAT, [], [127]);
  const qminName = addConstant(model, `${p}/qmin`, DataType.FLOAT, [], [-127]);
  const x = layer.input;
  const v = (s: string) => `${p}/${s}`;
  const reduce =
    model.opset() >= 18
      ? makeNode('ReduceMax', [v('abs'), addConstant(model, `${p}/axes`, DataType.INT64, [1], [-1])], [v('amax')], v('ReduceMax'), [attr.int('keepdims', 1)])
      : makeNode('ReduceMax', [v('abs')], [v('amax')], v('ReduceMax'), [attr.ints('axes', [-1]), attr.int('keepdims', 1)]);
  const nodes = [
    makeNode('Abs', [x], [v('abs')], v('Abs')),
    reduce,
    makeNode('Max', [v('amax'), epsName], [v('amax_safe')], v('Max')),
    makeNode('Div', [v('amax_safe'), qmaxName], [v('x_scale')], v('ScaleDiv')),
    makeNode('Div', [x, v('x_scale')], [v('x_scaled')], v('Div')),
    makeNode('Round', [v('x_scaled')], [v('x_rounded')], v('Round')),
    makeNode('Clip', [v('x_rounded'), qminName, qmaxName], [v('x_clipped')], v('Clip')),
    makeNode('Cast', [v('x_clipped')], [v('x_int8')], v('CastInt8'), [attr.int('to', DataType.INT8)]),
    makeNode('MatMulInteger', [v('x_int8'), wName], [v('acc')], v('MatMulInteger')),
    makeNode('Cast', [v('acc')], [v('acc_float')], v('CastFloat'), [attr.int('to', DataType.FLOAT)]),
    makeNode('Mul', [v('acc_float'), v('x_scale')], [v('token_scaled')], v('MulTokenScale')),
    makeNode('Mul', [v('token_scaled'), swName], [layer.output], v('MulWeightScale')),
  ];
  replaceNode(model.graph, layer.node, nodes);
  removeUnused(model);
}

export const w8a8 = definePass({
  id: 'quantize.w8a8',
  summary: 'W8A8: int8 per-channel weights with per-token dynamic int8 activations (MobileLLM PTQ), run by MatMulInteger',
  params: W8a8Params,
  needsCalibration: () => ({ need: 'none' }),
  eligible: (layer) => layer.kind === 'matmul',
  async apply(model, params, ctx) {
    const layers = await eachLayer(ctx, (layer) => {
      const W = readWeight(model, layer);
      const m = quantizeMatrix(W, layer.outFeatures, layer.inFeatures, { bits: 8, granularity: { kind: 'channel' }, symmetric: true });
      emitW8a8(model, layer, Int8Array.from(m.q, (q) => q - 128), m.scales, params.epsilon);
      return { bytes_before: W.length * 4, bytes_after: W.length + layer.outFeatures * 4, objective: squaredError(W, dequantizeMatrix(m)) };
    });
    return { layers, warnings: [] };
  },
  estimateBytes: (layer) => layer.outFeatures * layer.inFeatures + layer.outFeatures * 4,
});
