/**
 * GPT-2 forward pass in float64 plain loops, from the HF GPT2LMHeadModel definition: pre-LayerNorm
 * blocks, Conv1D weights [in, out], causal softmax attention scaled by 1/√head_dim, gelu_new, lm_head
 * tied to wte. The reference for the GPT-2 graph builder.
 */
export interface Gpt2RefConfig {
  n_embd: number;
  n_layer: number;
  n_head: number;
  vocab_size: number;
  n_inner: number;
  layer_norm_epsilon: number;
}

/** weights by HF name (with the `transformer.` prefix) as float64; ids [batch, seq]; returns logits [batch, seq, vocab] */
export function gpt2Forward(w: (name: string) => Float64Array, c: Gpt2RefConfig, ids: number[][]): Float64Array[][] {
  const H = c.n_embd;
  const hd = H / c.n_head;
  const linear = (x: Float64Array, W: Float64Array, b: Float64Array, inF: number, outF: number) => {
    const y = Float64Array.from(b);
    for (let i = 0; i < inF; i++) for (let j = 0; j < outF; j++) y[j] += x[i]! * W[i * outF + j]!;
    return y;
  };
  const layerNorm = (x: Float64Array, g: Float64Array, b: Float64Array) => {
    let mean = 0;
    for (const v of x) mean += v;
    mean /= x.length;
    let varc = 0;
    for (const v of x) varc += (v - mean) ** 2;
    varc /= x.length;
    const s = 1 / Math.sqrt(varc + c.layer_norm_epsilon);
    return x.map((v, i) => (v - mean) * s * g[i]! + b[i]!);
  };
  const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  const p = 'transformer.';
  const wte = w(`${p}wte.weight`);
  const wpe = w(`${p}wpe.weight`);

  return ids.map((row) => {
    const S = row.length;
    let h = row.map((id, t) => Float64Array.from({ length: H }, (_, j) => wte[id * H + j]! + wpe[t * H + j]!));
    for (let l = 0; l < c.n_layer; l++) {
      const m = `${p}h.${l}`;
      const qkv = h.map((x) => linear(layerNorm(x, w(`${m}.ln_1.weight`), w(`${m}.ln_1.bias`)), w(`${m}.attn.c_attn.weight`), w(`${m}.attn.c_attn.bias`), H, 3 * H));
      const ctx = h.map(() => new Float64Array(H));
      for (let head = 0; head < c.n_head; head++) {
        const o = head * hd;
        for (let t = 0; t < S; t++) {
          // causal softmax over positions 0..t
          const scores = Array.from({ length: t + 1 }, (_, u) => {
            let s = 0;
            for (let d = 0; d < hd; d++) s += qkv[t]![o + d]! * qkv[u]![H + o + d]!;
            return s / Math.sqrt(hd);
          });
          const max = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - max));
          const z = e.reduce((a, b) => a + b, 0);
          for (let u = 0; u <= t; u++) for (let d = 0; d < hd; d++) ctx[t]![o + d] += (e[u]! / z) * qkv[u]![2 * H + o + d]!;
        }
      }
      h = h.map((x, t) => {
        const a = linear(ctx[t]!, w(`${m}.attn.c_proj.weight`), w(`${m}.attn.c_proj.bias`), H, H);
        const r = x.map((v, i) => v + a[i]!);
        const f = linear(layerNorm(r, w(`${m}.ln_2.weight`), w(`${m}.ln_2.bias`)), w(`${m}.mlp.c_fc.weight`), w(`${m}.mlp.c_fc.bias`), H, c.n_inner).map(gelu);
        const y = linear(f, w(`${m}.mlp.c_proj.weight`), w(`${m}.mlp.c_proj.bias`), c.n_inner, H);
        return r.map((v, i) => v + y[i]!);
      });
    }
    return h.map((x) => {
      const f = layerNorm(x, w(`${p}ln_f.weight`), w(`${p}ln_f.bias`));
      return Float64Array.from({ length: c.vocab_size }, (_, v) => {
        let s = 0;
        for (let j = 0; j < H; j++) s += f[j]! * wte[v * H + j]!;
        return s;
      });
    });
  });
}
