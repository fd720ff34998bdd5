import { DataType } from '../dtype.js';
import type { QuantScheme } from '../quantized-safetensors.js';
import { attr, type GraphBuilder } from './graph-builder.js';
import { quantizedLinear } from './quantized-linear.js';

/**
 * Graph pieces of Llama-architecture decoders, named as PyTorch's exporter names them: linear layers
 * over [out, in] checkpoint weights (float or quantized), RMSNorm, RoPE tables and rotate_half.
 */

/**
 * y = x · Wᵀ (+ b) with W stored [out, in], float or quantized (docs/safetensors-layout.md): Transpose →
 * MatMul at `${path}/MatMul`, then Add at `${path}/Add` when the layer has a bias, as nn.Linear exports.
 */
export function linearLayers(g: GraphBuilder, quantized: ReadonlyMap<string, QuantScheme>, shapes: ReadonlyMap<string, number[]>) {
  return (x: string, weight: string, path: string, bias?: string): string => {
    const m = weight.replace(/\.weight$/, '');
    const scheme = quantized.get(m);
    let y: string;
    if (scheme) y = quantizedLinear(g, x, m, scheme, shapes.get(weight) as [number, number], path);
    else {
      const wt = g.op('Transpose', [g.weight(weight)], `${path}/Transpose`, [attr.ints('perm', [1, 0])]);
      y = g.op('MatMul', [x, wt], `${path}/MatMul`);
    }
    return bias ? g.op('Add', [y, g.weight(bias)], `${path}/Add`) : y;
  };
}

/**
 * y = x · (1 / sqrt(mean(x²) + eps)) · w over the last axis, as PyTorch exports it (ORT fuses it into
 * SimplifiedLayerNormalization); the weight's Mul is `${path}/Mul_1`, which write-back looks for.
 */
export function rmsNorm(g: GraphBuilder, x: string, weight: string, eps: number, path: string): string {
  const sq = g.op('Pow', [x, g.scalar(2)], `${path}/Pow`);
  const mean = g.op('ReduceMean', [sq], `${path}/ReduceMean`, [attr.ints('axes', [-1]), attr.int('keepdims', 1)]);
  const rs = g.op('Div', [g.scalar(1), g.op('Sqrt', [g.op('Add', [mean, g.scalar(eps)], `${path}/Add`)], `${path}/Sqrt`)], `${path}/Div`);
  return g.op('Mul', [g.op('Mul', [x, rs], `${path}/Mul`), g.weight(weight)], `${path}/Mul_1`);
}

export interface RopeTables {
  cos: string;
  sin: string;
  headDim: number;
}

/**
 * cos and sin of position · inverse frequency, duplicated to head_dim ([f, f], HF's layout):
 * positions [S] give tables [1, 1, S, hd]; position_ids [B, S] (a KV cache) give [B, 1, S, hd].
 */
export function ropeTables(g: GraphBuilder, pos: string, invFreq: ArrayLike<number>, batched: boolean): RopeTables {
  const half = invFreq.length;
  const posF = g.op('Cast', [pos], '/rotary/Cast', [attr.int('to', DataType.FLOAT)]);
  const freqs = g.op('Mul', [g.op('Unsqueeze', [posF, g.int64s([batched ? 2 : 1])], '/rotary/Unsqueeze'), g.floats(invFreq, [1, half])], '/rotary/Mul');
  const emb = g.op('Concat', [freqs, freqs], '/rotary/Concat', [attr.int('axis', -1)]);
  const axes = g.int64s(batched ? [1] : [0, 1]);
  const cos = g.op('Unsqueeze', [g.op('Cos', [emb], '/rotary/Cos'), axes], '/rotary/Unsqueeze_cos');
  const sin = g.op('Unsqueeze', [g.op('Sin', [emb], '/rotary/Sin'), axes], '/rotary/Unsqueeze_sin');
  return { cos, sin, headDim: 2 * half };
}

/** x·cos + rotate_half(x)·sin with rotate_half(x) = [−x₂, x₁], x [B, n, S, hd]. */
export function rotate(g: GraphBuilder, x: string, t: RopeTables, path: string): string {
  const h = t.headDim / 2;
  const [x1, x2] = g.opMulti('Split', [x, g.int64s([h, h])], `${path}/Split`, 2, [attr.int('axis', -1)]) as [string, string];
  const rotated = g.op('Concat', [g.op('Neg', [x2], `${path}/Neg`), x1], `${path}/Concat`, [attr.int('axis', -1)]);
  return g.op('Add', [g.op('Mul', [x, t.cos], `${path}/Mul`), g.op('Mul', [rotated, t.sin], `${path}/Mul_1`)], `${path}/Add`);
}
