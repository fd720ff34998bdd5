import { DataType } from '../dtype.js';
import type { QuantScheme } from '../quantized-safetensors.js';
import { attr, type GraphBuilder } from './graph-builder.js';
import { quantizedLinear } from './quantized-linear.js';

/**
 * Graph pieces of the Phi-3 and Gemma 3 builders, in the PyTorch exporter's node names so layer
 * names, block detection and the safetensors write-back read them as they read Llama's. Tensors:
 * hidden [B, S, H]; heads [B, n, S, hd] (T keys after the KV cache's past); RoPE tables [1, 1, S, r]
 * for the single-input graph and [B, 1, S, r] for position_ids [B, S] with a KV cache.
 */
export class DecoderOps {
  constructor(
    private readonly g: GraphBuilder,
    /** quantized modules by HF name (config.json's quantization_config) */
    private readonly quantized: ReadonlyMap<string, QuantScheme>,
    /** [out, in] of every projection weight, from config.json */
    private readonly shapes: ReadonlyMap<string, number[]>,
  ) {}

  /** y = x · Wᵀ with W stored [out, in], float or quantized (docs/safetensors-layout.md) */
  linear(x: string, weight: string, path: string): string {
    const g = this.g;
    const m = weight.replace(/\.weight$/, '');
    const scheme = this.quantized.get(m);
    if (scheme) return quantizedLinear(g, x, m, scheme, this.shapes.get(weight) as [number, number], path);
    const wt = g.op('Transpose', [g.weight(weight)], `${path}/Transpose`, [attr.ints('perm', [1, 0])]);
    return g.op('MatMul', [x, wt], `${path}/MatMul`);
  }

  /**
   * x · (1 / sqrt(mean(x²) + eps)) · w over the last axis, in float32 (the form ORT fuses into
   * SimplifiedLayerNormalization). Gemma's zero-centred norms scale by (1 + w): `offset` 1 adds
   * `${path}/Add_1` = w + 1, which keeps the checkpoint tensor as the initializer.
   */
  rmsNorm(x: string, weight: string, eps: number, path: string, offset = 0): string {
    const g = this.g;
    const sq = g.op('Pow', [x, g.scalar(2)], `${path}/Pow`);
    const mean = g.op('ReduceMean', [sq], `${path}/ReduceMean`, [attr.ints('axes', [-1]), attr.int('keepdims', 1)]);
    const rs = g.op('Div', [g.scalar(1), g.op('Sqrt', [g.op('Add', [mean, g.scalar(eps)], `${path}/Add`)], `${path}/Sqrt`)], `${path}/Div`);
    const w = offset === 0 ? g.weight(weight) : g.op('Add', [g.weight(weight), g.scalar(offset)], `${path}/Add_1`);
    return g.op('Mul', [g.op('Mul', [x, rs], `${path}/Mul`), w], `${path}/Mul_1`);
  }

  /** [B, S, n·hd] → [B, n, S, hd] */
  heads(x: string, n: number, hd: number, path: string): string {
    const g = this.g;
    return g.op('Transpose', [g.op('Reshape', [x, g.int64s([0, 0, n, hd])], `${path}/Reshape`)], `${path}/Transpose`, [attr.ints('perm', [0, 2, 1, 3])]);
  }

  /**
   * cos and sin [·, 1, S, r] for positions `pos` (int64 [S], or [B, S] with a KV cache) and inverse
   * frequencies `invFreq` (a value of r/2 floats), both multiplied by `scale` when it is not 1.
   */
  ropeTables(pos: string, invFreq: string, kvCache: boolean, scale: number, path: string): { cos: string; sin: string } {
    const g = this.g;
    const posF = g.op('Cast', [pos], `${path}/Cast`, [attr.int('to', DataType.FLOAT)]);
    const freqs = g.op('Mul', [g.op('Unsqueeze', [posF, g.int64s([-1])], `${path}/Unsqueeze`), invFreq], `${path}/Mul`);
    const emb = g.op('Concat', [freqs, freqs], `${path}/Concat`, [attr.int('axis', -1)]);
    const axes = g.int64s(kvCache ? [1] : [0, 1]);
    const table = (op: 'Cos' | 'Sin') => {
      const t = g.op(op, [emb], `${path}/${op}`);
      const scaled = scale === 1 ? t : g.op('Mul', [t, g.scalar(scale)], `${path}/Mul_${op.toLowerCase()}`);
      return g.op('Unsqueeze', [scaled, axes], `${path}/Unsqueeze_${op.toLowerCase()}`);
    };
    return { cos: table('Cos'), sin: table('Sin') };
  }

  /**
   * RoPE on the first `rot` channels of each head (x·cos + rotate_half(x)·sin, rotate_half(x) =
   * [−x₂, x₁]); with partial rotary the other hd − rot channels pass through unchanged.
   */
  rope(x: string, t: { cos: string; sin: string }, hd: number, rot: number, path: string): string {
    const g = this.g;
    const [rotated, pass] = rot === hd ? [x, undefined] : (g.opMulti('Split', [x, g.int64s([rot, hd - rot])], `${path}/Split_pass`, 2, [attr.int('axis', -1)]) as [string, string]);
    const [x1, x2] = g.opMulti('Split', [rotated, g.int64s([rot / 2, rot / 2])], `${path}/Split`, 2, [attr.int('axis', -1)]) as [string, string];
    const half = g.op('Concat', [g.op('Neg', [x2], `${path}/Neg`), x1], `${path}/Concat`, [attr.int('axis', -1)]);
    const out = g.op('Add', [g.op('Mul', [rotated, t.cos], `${path}/Mul`), g.op('Mul', [half, t.sin], `${path}/Mul_1`)], `${path}/Add`);
    return pass === undefined ? out : g.op('Concat', [out, pass], `${path}/Concat_pass`, [attr.int('axis', -1)]);
  }

  /**
   * softmax(q·kᵀ·scale + mask)·v for q [B, nh, S, hd] and k, v [B, nkv, T, hd] (grouped-query
   * attention: each KV head serves nh/nkv query heads), heads merged back to [B, S, nh·hd].
   * `path` is the attention module's (`/layers.0/self_attn`).
   */
  attention(q: string, k: string, v: string, mask: string, a: { nh: number; nkv: number; hd: number; scale: number }, path: string): string {
    const g = this.g;
    const repeat = (x: string, p: string) => {
      if (a.nkv === a.nh) return x;
      const expanded = g.op('Expand', [g.op('Unsqueeze', [x, g.int64s([2])], `${p}/Unsqueeze`), g.int64s([1, 1, a.nh / a.nkv, 1, 1])], `${p}/Expand`);
      return g.op('Reshape', [expanded, g.int64s([0, a.nh, -1, a.hd])], `${p}/Reshape`);
    };
    const kt = g.op('Transpose', [repeat(k, `${path}/repeat_k`)], `${path}/Transpose_k`, [attr.ints('perm', [0, 1, 3, 2])]);
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q, kt], `${path}/MatMul`), g.scalar(a.scale)], `${path}/Mul`), mask], `${path}/Add`);
    const probs = g.op('Softmax', [scores], `${path}/Softmax`, [attr.int('axis', -1)]);
    const ctx = g.op('MatMul', [probs, repeat(v, `${path}/repeat_v`)], `${path}/MatMul_1`);
    return g.op('Reshape', [g.op('Transpose', [ctx], `${path}/Transpose_o`, [attr.ints('perm', [0, 2, 1, 3])]), g.int64s([0, 0, a.nh * a.hd])], `${path}/Reshape_o`);
  }

  /** silu(x) = x · sigmoid(x) */
  silu(x: string, path: string): string {
    return this.g.op('Mul', [x, this.g.op('Sigmoid', [x], `${path}/Sigmoid`)], `${path}/Mul`);
  }

  /** gelu_pytorch_tanh(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), the pattern ORT fuses into FastGelu */
  geluTanh(x: string, path: string): string {
    const g = this.g;
    const cube = g.op('Pow', [x, g.scalar(3)], `${path}/Pow`);
    const arg = g.op('Add', [x, g.op('Mul', [cube, g.scalar(0.044715)], `${path}/Mul`)], `${path}/Add`);
    const t = g.op('Tanh', [g.op('Mul', [arg, g.scalar(Math.sqrt(2 / Math.PI))], `${path}/Mul_1`)], `${path}/Tanh`);
    return g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)], `${path}/Mul_2`), g.op('Add', [t, g.scalar(1)], `${path}/Add_1`)], `${path}/Mul_3`);
  }

  /** cap · tanh(x / cap): Gemma's soft-capping */
  softcap(x: string, cap: number, path: string): string {
    const g = this.g;
    return g.op('Mul', [g.op('Tanh', [g.op('Div', [x, g.scalar(cap)], `${path}/Div`)], `${path}/Tanh`), g.scalar(cap)], `${path}/Mul`);
  }
}
