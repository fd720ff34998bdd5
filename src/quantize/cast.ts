import { z } from 'zod';
import { DataType } from '../model/dtype.js';
import { attr, attrInt, makeNode } from '../model/graph.js';
import { insertBefore } from '../model/graph-edit.js';
import { readWeight, removeUnused, uniqueInitializerName } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { transpose2d } from '../model/ndarray.js';
import { fromFloat32, toFloat32 } from '../model/pack.js';
import { eachLayer } from '../pass/layer-loop.js';
import { definePass } from '../pass/pass.js';
import { squaredError } from './rtn.js';

/**
 * Half-precision weight storage: W (float32) -> Cast(W_fp16 → float32) -> layer. The file holds
 * 16-bit weights; ONNX Runtime folds the Cast when it loads the model, so activations stay float32
 * and every consumer sees the same graph as before.
 */

const CastParams = z.strictObject({
  dtype: z.enum(['float16', 'bfloat16']).default('float16').describe('storage type of the weights'),
});

function consumedLayout(layer: LinearLayer, W: Float32Array): Float32Array {
  const outIn = layer.kind === 'matmul' || (layer.kind === 'gemm' && attrInt(layer.node, 'transB', 0) !== 1);
  return outIn ? transpose2d(W, layer.outFeatures, layer.inFeatures) : W;
}

/** Rewrites the layer; returns W rounded to `dataType` (rounding is elementwise, so layout does not matter). */
export function emitCast(model: Model, layer: LinearLayer, W: Float32Array, dataType: number): Float32Array {
  const half = fromFloat32(dataType, consumedLayout(layer, W));
  const name = uniqueInitializerName(model, `${layer.name}.weight_${dataType === DataType.FLOAT16 ? 'fp16' : 'bf16'}`);
  model.setInitializer({ name, dataType, dims: layer.weightShape, data: half });
  const out = `${layer.name}.weight_float`;
  insertBefore(model.graph, layer.node, [makeNode('Cast', [name], [out], `${layer.node.name ?? layer.name}/Cast`, [attr.int('to', DataType.FLOAT)])]);
  layer.node.input![1] = out;
  removeUnused(model);
  return toFloat32(dataType, fromFloat32(dataType, W));
}

export const cast = definePass({
  id: 'quantize.cast',
  summary: 'store weights as float16 (or bfloat16) behind a Cast; half the bytes, float32 compute',
  params: CastParams,
  needsCalibration: () => ({ need: 'none' }),
  async apply(model, params, ctx) {
    const dataType = params.dtype === 'float16' ? DataType.FLOAT16 : DataType.BFLOAT16;
    const layers = await eachLayer(ctx, (layer) => {
      const W = readWeight(model, layer);
      const rounded = emitCast(model, layer, W, dataType);
      return { bytes_before: W.length * 4, bytes_after: W.length * 2, objective: squaredError(W, rounded) };
    });
    return { layers, warnings: [] };
  },
  estimateBytes: (layer) => layer.outFeatures * layer.inFeatures * 2,
});
