import { UserError } from '../../errors.js';
import { DataType } from '../dtype.js';
import type { Model } from '../model.js';
import type { SafetensorsFile } from '../safetensors.js';
import { readQuantizationConfig } from '../quantized-safetensors.js';
import { attr, type BuildOptions, causalMask, configReader, GraphBuilder, positions } from './graph-builder.js';
import { KvCache } from './kv-cache.js';
import { quantizedLinear } from './quantized-linear.js';

/**
 * Hugging Face `LlamaForCausalLM` (also MobileLLM: deep-thin, SwiGLU, grouped-query attention,
 * tied embeddings) as an ONNX graph: input_ids [batch, seq] int64 → logits [batch, seq, vocab].
 * Initializers keep the checkpoint's names and [out, in] layout; each projection is
 * Transpose(weight) → MatMul with the PyTorch exporter's node names (`/layers.0/mlp/gate_proj/MatMul`),
 * so `linears()` names layers as it does for an exported model and the weights write back to
 * safetensors unchanged. RoPE follows HF's rotate_half convention; attention is causal; RMSNorm
 * computes in float32. With `kvCache`, Optimum's decoder-with-past I/O (kv-cache.ts): RoPE at
 * position_ids, the mask from attention_mask, each layer's present keys/values before repeat_kv.
 */
export function buildLlama(st: SafetensorsFile, config: Record<string, unknown>, configPath: string, opts: BuildOptions = {}): Model {
  const c = configReader(config, configPath);
  const H = c.int('hidden_size');
  const layers = c.layers('num_hidden_layers', st.tensors.size, st.path);
  const nh = c.int('num_attention_heads');
  const nkv = c.int('num_key_value_heads', nh);
  const ffn = c.int('intermediate_size');
  const vocab = c.int('vocab_size');
  const hd = c.int('head_dim', H / nh);
  const eps = c.num('rms_norm_eps', 1e-6);
  const theta = c.num('rope_theta', 10000);
  if (config.rope_scaling) throw new UserError(`${configPath}: rope_scaling ${JSON.stringify(config.rope_scaling)} is not supported yet; only plain RoPE`);
  const act = config.hidden_act ?? 'silu';
  if (act !== 'silu') throw new UserError(`${configPath}: hidden_act ${JSON.stringify(act)} is not supported; Llama uses silu`);
  if (config.attention_bias === true || config.mlp_bias === true) throw new UserError(`${configPath}: attention_bias/mlp_bias are not supported; Llama projections have no bias`);
  if (nh % nkv !== 0) throw new UserError(`${configPath}: num_attention_heads ${nh} is not a multiple of num_key_value_heads ${nkv}`);
  if (hd % 2 !== 0) throw new UserError(`${configPath}: head_dim ${hd} must be even for RoPE`);

  const g = new GraphBuilder(st, `a Llama model with ${layers} layers`);
  const shapes: [string, number[]][] = [['model.embed_tokens.weight', [vocab, H]], ['lm_head.weight', [vocab, H]], ['model.norm.weight', [H]]];
  for (let i = 0; i < layers; i++) {
    const m = `model.layers.${i}`;
    shapes.push(
      [`${m}.self_attn.q_proj.weight`, [nh * hd, H]],
      [`${m}.self_attn.k_proj.weight`, [nkv * hd, H]],
      [`${m}.self_attn.v_proj.weight`, [nkv * hd, H]],
      [`${m}.self_attn.o_proj.weight`, [H, nh * hd]],
      [`${m}.mlp.gate_proj.weight`, [ffn, H]],
      [`${m}.mlp.up_proj.weight`, [ffn, H]],
      [`${m}.mlp.down_proj.weight`, [H, ffn]],
      [`${m}.input_layernorm.weight`, [H]],
      [`${m}.post_attention_layernorm.weight`, [H]],
    );
  }
  const quantized = readQuantizationConfig(config, configPath);
  for (const [name, shape] of shapes) if (!quantized.has(name.replace(/\.weight$/, ''))) g.expectShape(name, shape);
  const shapeOf = new Map(shapes);

  // y = x · Wᵀ with W stored [out, in], float or quantized (docs/safetensors-layout.md)
  const linear = (x: string, weight: string, path: string) => {
    const m = weight.replace(/\.weight$/, '');
    const scheme = quantized.get(m);
    if (scheme) return quantizedLinear(g, x, m, scheme, shapeOf.get(weight) as [number, number], path);
    const wt = g.op('Transpose', [g.weight(weight)], `${path}/Transpose`, [attr.ints('perm', [1, 0])]);
    return g.op('MatMul', [x, wt], `${path}/MatMul`);
  };
  // y = x · (1 / sqrt(mean(x²) + eps)) · w, as PyTorch exports it: ORT fuses it into SimplifiedLayerNormalization
  const rmsNorm = (x: string, weight: string, path: string) => {
    const sq = g.op('Pow', [x, g.scalar(2)], `${path}/Pow`);
    const mean = g.op('ReduceMean', [sq], `${path}/ReduceMean`, [attr.ints('axes', [-1]), attr.int('keepdims', 1)]);
    const rs = g.op('Div', [g.scalar(1), g.op('Sqrt', [g.op('Add', [mean, g.scalar(eps)], `${path}/Add`)], `${path}/Sqrt`)], `${path}/Div`);
    return g.op('Mul', [g.op('Mul', [x, rs], `${path}/Mul`), g.weight(weight)], `${path}/Mul_1`);
  };

  // positions [S] and RoPE tables [1, 1, S, hd] with the causal mask [S, S]; with a KV cache
  // position_ids [B, S], tables [B, 1, S, hd] and the mask [B, 1, S, past + S]
  const cache = opts.kvCache ? new KvCache(g, { layers, heads: nkv, headDim: hd }) : undefined;
  const pos = cache ? cache.positions : positions(g);
  const posF = g.op('Cast', [pos], '/rotary/Cast', [attr.int('to', DataType.FLOAT)]);
  const invFreq = Float32Array.from({ length: hd / 2 }, (_, i) => 1 / theta ** ((2 * i) / hd));
  const freqs = g.op('Mul', [g.op('Unsqueeze', [posF, g.int64s([cache ? 2 : 1])], '/rotary/Unsqueeze'), g.floats(invFreq, [1, hd / 2])], '/rotary/Mul');
  const emb = g.op('Concat', [freqs, freqs], '/rotary/Concat', [attr.int('axis', -1)]);
  const tableAxes = g.int64s(cache ? [1] : [0, 1]);
  const cos = g.op('Unsqueeze', [g.op('Cos', [emb], '/rotary/Cos'), tableAxes], '/rotary/Unsqueeze_cos');
  const sin = g.op('Unsqueeze', [g.op('Sin', [emb], '/rotary/Sin'), tableAxes], '/rotary/Unsqueeze_sin');
  const mask = cache ? cache.mask() : causalMask(g, pos);

  // x·cos + rotate_half(x)·sin, rotate_half(x) = [-x₂, x₁]
  const rope = (x: string, path: string) => {
    const [x1, x2] = g.opMulti('Split', [x, g.int64s([hd / 2, hd / 2])], `${path}/Split`, 2, [attr.int('axis', -1)]) as [string, string];
    const rotated = g.op('Concat', [g.op('Neg', [x2], `${path}/Neg`), x1], `${path}/Concat`, [attr.int('axis', -1)]);
    return g.op('Add', [g.op('Mul', [x, cos], `${path}/Mul`), g.op('Mul', [rotated, sin], `${path}/Mul_1`)], `${path}/Add`);
  };
  // [B, S, n·hd] → [B, n, S, hd]
  const heads = (x: string, n: number, path: string) =>
    g.op('Transpose', [g.op('Reshape', [x, g.int64s([0, 0, n, hd])], `${path}/Reshape`)], `${path}/Transpose`, [attr.ints('perm', [0, 2, 1, 3])]);
  // grouped-query attention: each KV head serves nh/nkv query heads
  const repeatKv = (x: string, path: string) => {
    if (nkv === nh) return x;
    const expanded = g.op('Expand', [g.op('Unsqueeze', [x, g.int64s([2])], `${path}/Unsqueeze`), g.int64s([1, 1, nh / nkv, 1, 1])], `${path}/Expand`);
    return g.op('Reshape', [expanded, g.int64s([0, nh, -1, hd])], `${path}/Reshape`);
  };

  let h = g.op('Gather', [g.weight('model.embed_tokens.weight'), 'input_ids'], '/embed_tokens/Gather', [attr.int('axis', 0)]);
  for (let i = 0; i < layers; i++) {
    const p = `/layers.${i}`;
    const m = `model.layers.${i}`;
    const xn = rmsNorm(h, `${m}.input_layernorm.weight`, `${p}/input_layernorm`);
    const q = rope(heads(linear(xn, `${m}.self_attn.q_proj.weight`, `${p}/self_attn/q_proj`), nh, `${p}/self_attn/q`), `${p}/self_attn/rotary_q`);
    let k = rope(heads(linear(xn, `${m}.self_attn.k_proj.weight`, `${p}/self_attn/k_proj`), nkv, `${p}/self_attn/k`), `${p}/self_attn/rotary_k`);
    let v = heads(linear(xn, `${m}.self_attn.v_proj.weight`, `${p}/self_attn/v_proj`), nkv, `${p}/self_attn/v`);
    if (cache) [k, v] = cache.append(i, k, v, `${p}/self_attn`);
    const kt = g.op('Transpose', [repeatKv(k, `${p}/self_attn/repeat_k`)], `${p}/self_attn/Transpose_k`, [attr.ints('perm', [0, 1, 3, 2])]);
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q, kt], `${p}/self_attn/MatMul`), g.scalar(1 / Math.sqrt(hd))], `${p}/self_attn/Mul`), mask], `${p}/self_attn/Add`);
    const probs = g.op('Softmax', [scores], `${p}/self_attn/Softmax`, [attr.int('axis', -1)]);
    const ctx = g.op('MatMul', [probs, repeatKv(v, `${p}/self_attn/repeat_v`)], `${p}/self_attn/MatMul_1`);
    const merged = g.op('Reshape', [g.op('Transpose', [ctx], `${p}/self_attn/Transpose_o`, [attr.ints('perm', [0, 2, 1, 3])]), g.int64s([0, 0, nh * hd])], `${p}/self_attn/Reshape_o`);
    h = g.op('Add', [h, linear(merged, `${m}.self_attn.o_proj.weight`, `${p}/self_attn/o_proj`)], `${p}/Add`);
    // SwiGLU: down(silu(gate(x)) · up(x))
    const xm = rmsNorm(h, `${m}.post_attention_layernorm.weight`, `${p}/post_attention_layernorm`);
    const gate = linear(xm, `${m}.mlp.gate_proj.weight`, `${p}/mlp/gate_proj`);
    const silu = g.op('Mul', [gate, g.op('Sigmoid', [gate], `${p}/mlp/act_fn/Sigmoid`)], `${p}/mlp/act_fn/Mul`);
    const up = linear(xm, `${m}.mlp.up_proj.weight`, `${p}/mlp/up_proj`);
    const down = linear(g.op('Mul', [silu, up], `${p}/mlp/Mul`), `${m}.mlp.down_proj.weight`, `${p}/mlp/down_proj`);
    h = g.op('Add', [h, down], `${p}/Add_1`);
  }
  const final = rmsNorm(h, 'model.norm.weight', '/norm');
  const hasHead = g.has('lm_head.weight') || quantized.has('lm_head');
  const tied = config.tie_word_embeddings ?? !hasHead;
  if (!tied && !hasHead) throw new UserError(`${st.path}: tensor 'lm_head.weight' is missing and ${configPath} sets tie_word_embeddings false`);
  const logits = linear(final, tied ? 'model.embed_tokens.weight' : 'lm_head.weight', '/lm_head');
  return g.finish('llama', logits, vocab, cache?.io(vocab));
}
