import { attention, geluTanh, matvec, perHead, rmsNorm, rotate } from './decoder-loops.js';

/**
 * Gemma 3 (text) forward pass in float64 plain loops, from transformers' Gemma3ForCausalLM
 * equations: embedding × √hidden_size; RMSNorms scale by (1 + w); per block
 *   h += post_attention_norm(attention(input_norm(h)))
 *   h += post_feedforward_norm(down(gelu_tanh(gate(x)) · up(x))),  x = pre_feedforward_norm(h)
 * with q_norm/k_norm ((1 + w) RMSNorm over head_dim) on each head before RoPE, scores scaled by
 * query_pre_attn_scalar^−½; sliding layers see keys less than sliding_window back and rotate with
 * rope_local_base_freq, full layers with rope_theta / rope_scaling.factor (linear); logits
 * cap·tanh(logits/cap) when final_logit_softcapping is set; lm_head tied to the embedding.
 * The reference for the Gemma 3 graph builder.
 */
export interface Gemma3RefConfig {
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  intermediate_size: number;
  vocab_size: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_local_base_freq: number;
  rope_scaling?: { rope_type: 'linear'; factor: number } | null;
  sliding_window: number;
  layer_types: ('sliding_attention' | 'full_attention')[];
  query_pre_attn_scalar: number;
  final_logit_softcapping?: number | null;
}

/** weights by HF name as float64; ids [batch, seq] at positions 0..seq−1; returns logits [batch][seq][vocab] */
export function gemma3Forward(w: (name: string) => Float64Array, c: Gemma3RefConfig, ids: number[][]): Float64Array[][] {
  const { hidden_size: H, num_attention_heads: nh, num_key_value_heads: nkv, head_dim: hd, intermediate_size: F, rms_norm_eps: eps } = c;
  const embed = w('model.embed_tokens.weight');
  const norm = (x: Float64Array, name: string) => rmsNorm(x, w(name), eps, 1);
  const freqs = (theta: number, factor: number) => Array.from({ length: hd / 2 }, (_, j) => 1 / theta ** ((2 * j) / hd) / factor);
  const inv = {
    full_attention: freqs(c.rope_theta, c.rope_scaling?.factor ?? 1),
    sliding_attention: freqs(c.rope_local_base_freq, 1),
  };
  const normalizer = Math.fround(Math.sqrt(H)); // float32 embeddings

  return ids.map((row) => {
    let h = row.map((id) => embed.slice(id * H, (id + 1) * H).map((x) => x * normalizer));
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const m = `model.layers.${l}`;
      const kind = c.layer_types[l]!;
      const q: Float64Array[] = [];
      const k: Float64Array[] = [];
      const v: Float64Array[] = [];
      h.forEach((x, t) => {
        const xn = norm(x, `${m}.input_layernorm.weight`);
        q.push(perHead(matvec(w(`${m}.self_attn.q_proj.weight`), xn, nh * hd, H), nh, hd, (y) => rotate(norm(y, `${m}.self_attn.q_norm.weight`), t, inv[kind], hd)));
        k.push(perHead(matvec(w(`${m}.self_attn.k_proj.weight`), xn, nkv * hd, H), nkv, hd, (y) => rotate(norm(y, `${m}.self_attn.k_norm.weight`), t, inv[kind], hd)));
        v.push(matvec(w(`${m}.self_attn.v_proj.weight`), xn, nkv * hd, H));
      });
      const window = kind === 'sliding_attention' ? c.sliding_window : undefined;
      const ctx = attention(q, k, v, { nh, nkv, hd, scale: c.query_pre_attn_scalar ** -0.5, window });
      h = h.map((x, t) => {
        const a = norm(matvec(w(`${m}.self_attn.o_proj.weight`), ctx[t]!, H, nh * hd), `${m}.post_attention_layernorm.weight`);
        const r = x.map((xi, i) => xi + a[i]!);
        const xm = norm(r, `${m}.pre_feedforward_layernorm.weight`);
        const gate = matvec(w(`${m}.mlp.gate_proj.weight`), xm, F, H);
        const up = matvec(w(`${m}.mlp.up_proj.weight`), xm, F, H);
        const down = matvec(w(`${m}.mlp.down_proj.weight`), gate.map((g, j) => geluTanh(g) * up[j]!), H, F);
        const f = norm(down, `${m}.post_feedforward_layernorm.weight`);
        return r.map((ri, i) => ri + f[i]!);
      });
    }
    const cap = c.final_logit_softcapping;
    return h.map((x) => {
      const logits = matvec(embed, norm(x, 'model.norm.weight'), c.vocab_size, H);
      return cap ? logits.map((z) => cap * Math.tanh(z / cap)) : logits;
    });
  });
}
