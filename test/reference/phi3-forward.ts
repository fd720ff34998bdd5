import { attention, matvec, perHead, rmsNorm, rotate, silu } from './decoder-loops.js';

/**
 * Phi-3 forward pass in float64 plain loops, from transformers' Phi3ForCausalLM equations: pre-
 * RMSNorm blocks; the fused qkv_proj's output rows are q (nh·hd), then k, then v (nkv·hd each);
 * RoPE on the first head_dim·partial_rotary_factor channels; LongRoPE frequencies
 * 1 / (factor_i · θ^(2i/d)) with the short factors while the sequence length ≤
 * original_max_position_embeddings and the long ones beyond, cos and sin times
 * √(1 + ln(max/original) / ln(original)); attention causal within sliding_window; gate_up_proj's rows
 * are gate then up, the MLP is down(up · silu(gate)). The reference for the Phi-3 graph builder.
 */
export interface Phi3RefConfig {
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  intermediate_size: number;
  vocab_size: number;
  rms_norm_eps: number;
  rope_theta: number;
  partial_rotary_factor?: number;
  max_position_embeddings: number;
  original_max_position_embeddings?: number;
  rope_scaling?: { type: 'longrope'; short_factor: number[]; long_factor: number[] } | null;
  sliding_window?: number | null;
  tie_word_embeddings: boolean;
}

/** weights by HF name as float64; ids [batch, seq] at positions 0..seq−1; returns logits [batch][seq][vocab] */
export function phi3Forward(w: (name: string) => Float64Array, c: Phi3RefConfig, ids: number[][]): Float64Array[][] {
  const { hidden_size: H, num_attention_heads: nh, num_key_value_heads: nkv, head_dim: hd, intermediate_size: F } = c;
  const rot = Math.floor(hd * (c.partial_rotary_factor ?? 1));
  const embed = w('model.embed_tokens.weight');
  const head = c.tie_word_embeddings ? embed : w('lm_head.weight');

  return ids.map((row) => {
    const S = row.length;
    // RoPE frequencies for this sequence length
    let inv = Array.from({ length: rot / 2 }, (_, j) => 1 / c.rope_theta ** ((2 * j) / rot));
    let scale = 1;
    if (c.rope_scaling) {
      const original = c.original_max_position_embeddings!;
      const factors = S > original ? c.rope_scaling.long_factor : c.rope_scaling.short_factor;
      inv = inv.map((f, j) => f / factors[j]!);
      const ratio = c.max_position_embeddings / original;
      scale = ratio > 1 ? Math.sqrt(1 + Math.log(ratio) / Math.log(original)) : 1;
    }
    let h = row.map((id) => embed.slice(id * H, (id + 1) * H));
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const m = `model.layers.${l}`;
      const q: Float64Array[] = [];
      const k: Float64Array[] = [];
      const v: Float64Array[] = [];
      h.forEach((x, t) => {
        const qkv = matvec(w(`${m}.self_attn.qkv_proj.weight`), rmsNorm(x, w(`${m}.input_layernorm.weight`), c.rms_norm_eps), (nh + 2 * nkv) * hd, H);
        q.push(perHead(qkv.subarray(0, nh * hd), nh, hd, (x) => rotate(x, t, inv, rot, scale)));
        k.push(perHead(qkv.subarray(nh * hd, (nh + nkv) * hd), nkv, hd, (x) => rotate(x, t, inv, rot, scale)));
        v.push(qkv.slice((nh + nkv) * hd));
      });
      const ctx = attention(q, k, v, { nh, nkv, hd, scale: 1 / Math.sqrt(hd), window: c.sliding_window ?? undefined });
      h = h.map((x, t) => {
        const o = matvec(w(`${m}.self_attn.o_proj.weight`), ctx[t]!, H, nh * hd);
        const r = x.map((xi, i) => xi + o[i]!);
        const gu = matvec(w(`${m}.mlp.gate_up_proj.weight`), rmsNorm(r, w(`${m}.post_attention_layernorm.weight`), c.rms_norm_eps), 2 * F, H);
        const act = Float64Array.from({ length: F }, (_, j) => gu[F + j]! * silu(gu[j]!));
        const down = matvec(w(`${m}.mlp.down_proj.weight`), act, H, F);
        return r.map((ri, i) => ri + down[i]!);
      });
    }
    return h.map((x) => matvec(head, rmsNorm(x, w('model.norm.weight'), c.rms_norm_eps), c.vocab_size, H));
  });
}
