/**
 * Llama-architecture forward pass in float64 plain loops, from the Hugging Face modeling files of
 * LlamaForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM: token embedding; per block
 * h += o(attn(RMSNorm(h))), h += down(silu(gate(x))·up(x)) with x = RMSNorm(h); final RMSNorm; logits
 * = h·Wᵀ with W the head or, tied, the embedding. Attention: q/k/v = x·Wᵀ (+ b, Qwen2), split into
 * heads of head_dim (given apart from hidden/heads), each query and key head RMS-normalised over
 * head_dim (Qwen3's q_norm/k_norm), rotated by RoPE (rotate_half: pairs i and i + d/2) at angle
 * position·f_i, f_i = θ^(−2i/d), optionally rescaled by Llama 3.1's rule; query head h reads KV head
 * ⌊h·kv/heads⌋ (grouped-query attention); causal softmax of q·k/√head_dim. The reference for the
 * Llama, Qwen2 and Qwen3 graph builders.
 */
export interface LlamaFamilyRefConfig {
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  intermediate_size: number;
  vocab_size: number;
  rms_norm_eps: number;
  rope_theta: number;
  /** Llama 3.1's frequency scaling */
  llama3?: { factor: number; low_freq_factor: number; high_freq_factor: number; original_max_position_embeddings: number };
  /** q/k/v biases (Qwen2) */
  qkv_bias: boolean;
  /** per-head q/k RMSNorm (Qwen3) */
  qk_norm: boolean;
  tie_word_embeddings: boolean;
}

/** RoPE frequency i of head_dim d, with Llama 3.1's piecewise rule written from its wavelength form. */
export function ropeFrequency(i: number, c: Pick<LlamaFamilyRefConfig, 'head_dim' | 'rope_theta' | 'llama3'>): number {
  const f = 1 / c.rope_theta ** ((2 * i) / c.head_dim);
  const s = c.llama3;
  if (!s) return f;
  const wavelength = (2 * Math.PI) / f;
  const shortest = s.original_max_position_embeddings / s.high_freq_factor;
  const longest = s.original_max_position_embeddings / s.low_freq_factor;
  if (wavelength < shortest) return f;
  if (wavelength > longest) return f / s.factor;
  const t = (s.original_max_position_embeddings / wavelength - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  return (1 - t) * (f / s.factor) + t * f;
}

function rmsNorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * w[i]!);
}

/** y = W·x (+ b), W [out, in] */
function linear(x: Float64Array, W: Float64Array, out: number, b?: Float64Array): Float64Array {
  const inF = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o]! : 0;
    for (let i = 0; i < inF; i++) s += W[o * inF + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

/**
 * Weights by HF name as float64; ids [batch, seq] at positions 0..seq−1; returns logits [batch][seq][vocab].
 */
export function llamaFamilyForward(w: (name: string) => Float64Array, c: LlamaFamilyRefConfig, ids: number[][]): Float64Array[][] {
  const H = c.hidden_size;
  const d = c.head_dim;
  const nh = c.num_attention_heads;
  const nkv = c.num_key_value_heads;
  const freqs = Array.from({ length: d / 2 }, (_, i) => ropeFrequency(i, c));
  const embed = w('model.embed_tokens.weight');
  const headW = c.tie_word_embeddings ? embed : w('lm_head.weight');

  // one head vector [d]: optional RMSNorm, then rotation at position t
  const prepare = (x: Float64Array, t: number, norm?: Float64Array) => {
    const v = norm ? rmsNorm(x, norm, c.rms_norm_eps) : x;
    const out = new Float64Array(d);
    for (let i = 0; i < d / 2; i++) {
      const a = t * freqs[i]!;
      out[i] = v[i]! * Math.cos(a) - v[i + d / 2]! * Math.sin(a);
      out[i + d / 2] = v[i + d / 2]! * Math.cos(a) + v[i]! * Math.sin(a);
    }
    return out;
  };

  return ids.map((row) => {
    const S = row.length;
    let h = row.map((id) => embed.slice(id * H, (id + 1) * H));
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const m = `model.layers.${l}`;
      const a = `${m}.self_attn`;
      const bias = (p: string) => (c.qkv_bias ? w(`${a}.${p}.bias`) : undefined);
      const xs = h.map((x) => rmsNorm(x, w(`${m}.input_layernorm.weight`), c.rms_norm_eps));
      const q = xs.map((x) => linear(x, w(`${a}.q_proj.weight`), nh * d, bias('q_proj')));
      const k = xs.map((x) => linear(x, w(`${a}.k_proj.weight`), nkv * d, bias('k_proj')));
      const v = xs.map((x) => linear(x, w(`${a}.v_proj.weight`), nkv * d, bias('v_proj')));
      const qNorm = c.qk_norm ? w(`${a}.q_norm.weight`) : undefined;
      const kNorm = c.qk_norm ? w(`${a}.k_norm.weight`) : undefined;
      const qh = q.map((x, t) => Array.from({ length: nh }, (_, j) => prepare(x.slice(j * d, (j + 1) * d), t, qNorm)));
      const kh = k.map((x, t) => Array.from({ length: nkv }, (_, j) => prepare(x.slice(j * d, (j + 1) * d), t, kNorm)));
      const ctx = h.map(() => new Float64Array(nh * d));
      for (let j = 0; j < nh; j++) {
        const g = Math.floor((j * nkv) / nh);
        for (let t = 0; t < S; t++) {
          const scores = Array.from({ length: t + 1 }, (_, u) => {
            let s = 0;
            for (let i = 0; i < d; i++) s += qh[t]![j]![i]! * kh[u]![g]![i]!;
            return s / Math.sqrt(d);
          });
          const max = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - max));
          const z = e.reduce((x, y) => x + y, 0);
          for (let u = 0; u <= t; u++) for (let i = 0; i < d; i++) ctx[t]![j * d + i] += (e[u]! / z) * v[u]![g * d + i]!;
        }
      }
      h = h.map((x, t) => {
        const o = linear(ctx[t]!, w(`${a}.o_proj.weight`), H);
        const r = x.map((val, i) => val + o[i]!);
        const xm = rmsNorm(r, w(`${m}.post_attention_layernorm.weight`), c.rms_norm_eps);
        const gate = linear(xm, w(`${m}.mlp.gate_proj.weight`), c.intermediate_size);
        const up = linear(xm, w(`${m}.mlp.up_proj.weight`), c.intermediate_size);
        const act = gate.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[i]!);
        const down = linear(act, w(`${m}.mlp.down_proj.weight`), H);
        return r.map((val, i) => val + down[i]!);
      });
    }
    return h.map((x) => linear(rmsNorm(x, w('model.norm.weight'), c.rms_norm_eps), headW, c.vocab_size));
  });
}
