import { UserError } from '../../errors.js';
import type { Model } from '../model.js';
import type { SafetensorsFile } from '../safetensors.js';
import { readQuantizationConfig } from '../quantized-safetensors.js';
import { attr, type BuildOptions, causalMask, configReader, GraphBuilder, positions } from './graph-builder.js';
import { KvCache } from './kv-cache.js';
import { LLAMA, readLlamaConfig, type LlamaVariant } from './llama-config.js';
import { linearLayers, rmsNorm, ropeTables, rotate } from './llama-parts.js';

/**
 * Hugging Face `LlamaForCausalLM` (also MobileLLM: deep-thin, SwiGLU, grouped-query attention,
 * tied embeddings) and the families that differ from it by a switch (llama-config.ts: Qwen2's q/k/v
 * biases, Qwen3's q/k norms) as an ONNX graph: input_ids [batch, seq] int64 → logits [batch, seq,
 * vocab]. Initializers keep the checkpoint's names and [out, in] layout; each projection is
 * Transpose(weight) → MatMul (→ Add bias) with the PyTorch exporter's node names
 * (`/layers.0/mlp/gate_proj/MatMul`), so `linears()` names layers as it does for an exported model
 * and the weights write back to safetensors unchanged. RoPE follows HF's rotate_half convention with
 * rope_theta and llama3 frequency scaling (rope.ts); head_dim may differ from hidden/heads; attention
 * is causal; RMSNorm computes in float32. With `kvCache`, Optimum's decoder-with-past I/O
 * (kv-cache.ts): RoPE at position_ids, the mask from attention_mask, each layer's present
 * keys/values before repeat_kv.
 */
export function buildLlamaFamily(variant: LlamaVariant) {
  return (st: SafetensorsFile, config: Record<string, unknown>, configPath: string, opts: BuildOptions = {}): Model => build(variant, st, config, configPath, opts);
}

export const buildLlama = buildLlamaFamily(LLAMA);

function build(variant: LlamaVariant, st: SafetensorsFile, config: Record<string, unknown>, configPath: string, opts: BuildOptions): Model {
  // a layer count the file's tensors cannot hold is refused before anything is sized by it
  configReader(config, configPath).layers('num_hidden_layers', st.tensors.size, st.path);
  const { hidden: H, layers, heads: nh, kvHeads: nkv, headDim: hd, ffn, vocab, eps, invFreq } = readLlamaConfig(config, configPath, variant);
  const g = new GraphBuilder(st, `a ${variant.name} model with ${layers} layers`);
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
    if (variant.qkvBias) shapes.push([`${m}.self_attn.q_proj.bias`, [nh * hd]], [`${m}.self_attn.k_proj.bias`, [nkv * hd]], [`${m}.self_attn.v_proj.bias`, [nkv * hd]]);
    if (variant.qkNorm) shapes.push([`${m}.self_attn.q_norm.weight`, [hd]], [`${m}.self_attn.k_norm.weight`, [hd]]);
  }
  const quantized = readQuantizationConfig(config, configPath);
  for (const [name, shape] of shapes) if (!quantized.has(name.replace(/\.weight$/, ''))) g.expectShape(name, shape);
  const linear = linearLayers(g, quantized, new Map(shapes));

  // positions [S] and RoPE tables [1, 1, S, hd] with the causal mask [S, S]; with a KV cache
  // position_ids [B, S], tables [B, 1, S, hd] and the mask [B, 1, S, past + S]
  const cache = opts.kvCache !== false ? new KvCache(g, { layers, heads: nkv, headDim: hd }) : undefined;
  const pos = cache ? cache.positions : positions(g);
  const tables = ropeTables(g, pos, invFreq, cache !== undefined);
  const mask = cache ? cache.mask() : causalMask(g, pos);

  // [B, S, n·hd] → [B, S, n, hd] (→ RMSNorm over hd, Qwen3) → [B, n, S, hd]
  const heads = (x: string, n: number, path: string, norm?: { weight: string; path: string }) => {
    let split = g.op('Reshape', [x, g.int64s([0, 0, n, hd])], `${path}/Reshape`);
    if (norm) split = rmsNorm(g, split, norm.weight, eps, norm.path);
    return g.op('Transpose', [split], `${path}/Transpose`, [attr.ints('perm', [0, 2, 1, 3])]);
  };
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
    const a = `${m}.self_attn`;
    const bias = (proj: string) => (variant.qkvBias ? `${a}.${proj}.bias` : undefined);
    const norm = (which: 'q_norm' | 'k_norm') => (variant.qkNorm ? { weight: `${a}.${which}.weight`, path: `${p}/self_attn/${which}` } : undefined);
    const xn = rmsNorm(g, h, `${m}.input_layernorm.weight`, eps, `${p}/input_layernorm`);
    const q = rotate(g, heads(linear(xn, `${a}.q_proj.weight`, `${p}/self_attn/q_proj`, bias('q_proj')), nh, `${p}/self_attn/q`, norm('q_norm')), tables, `${p}/self_attn/rotary_q`);
    let k = rotate(g, heads(linear(xn, `${a}.k_proj.weight`, `${p}/self_attn/k_proj`, bias('k_proj')), nkv, `${p}/self_attn/k`, norm('k_norm')), tables, `${p}/self_attn/rotary_k`);
    let v = heads(linear(xn, `${a}.v_proj.weight`, `${p}/self_attn/v_proj`, bias('v_proj')), nkv, `${p}/self_attn/v`);
    if (cache) [k, v] = cache.append(i, k, v, `${p}/self_attn`);
    const kt = g.op('Transpose', [repeatKv(k, `${p}/self_attn/repeat_k`)], `${p}/self_attn/Transpose_k`, [attr.ints('perm', [0, 1, 3, 2])]);
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q, kt], `${p}/self_attn/MatMul`), g.scalar(1 / Math.sqrt(hd))], `${p}/self_attn/Mul`), mask], `${p}/self_attn/Add`);
    const probs = g.op('Softmax', [scores], `${p}/self_attn/Softmax`, [attr.int('axis', -1)]);
    const ctx = g.op('MatMul', [probs, repeatKv(v, `${p}/self_attn/repeat_v`)], `${p}/self_attn/MatMul_1`);
    const merged = g.op('Reshape', [g.op('Transpose', [ctx], `${p}/self_attn/Transpose_o`, [attr.ints('perm', [0, 2, 1, 3])]), g.int64s([0, 0, nh * hd])], `${p}/self_attn/Reshape_o`);
    h = g.op('Add', [h, linear(merged, `${a}.o_proj.weight`, `${p}/self_attn/o_proj`)], `${p}/Add`);
    // SwiGLU: down(silu(gate(x)) · up(x))
    const xm = rmsNorm(g, h, `${m}.post_attention_layernorm.weight`, eps, `${p}/post_attention_layernorm`);
    const gate = linear(xm, `${m}.mlp.gate_proj.weight`, `${p}/mlp/gate_proj`);
    const silu = g.op('Mul', [gate, g.op('Sigmoid', [gate], `${p}/mlp/act_fn/Sigmoid`)], `${p}/mlp/act_fn/Mul`);
    const up = linear(xm, `${m}.mlp.up_proj.weight`, `${p}/mlp/up_proj`);
    const down = linear(g.op('Mul', [silu, up], `${p}/mlp/Mul`), `${m}.mlp.down_proj.weight`, `${p}/mlp/down_proj`);
    h = g.op('Add', [h, down], `${p}/Add_1`);
  }
  const final = rmsNorm(g, h, 'model.norm.weight', eps, '/norm');
  const hasHead = g.has('lm_head.weight') || quantized.has('lm_head');
  const tied = config.tie_word_embeddings ?? !hasHead;
  if (!tied && !hasHead) throw new UserError(`${st.path}: tensor 'lm_head.weight' is missing and ${configPath} sets tie_word_embeddings false`);
  const logits = linear(final, tied ? 'model.embed_tokens.weight' : 'lm_head.weight', '/lm_head');
  return g.finish(variant.graphName, logits, vocab, cache?.io(vocab));
}
