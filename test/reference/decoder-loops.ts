/**
 * Float64 building blocks of the decoder references (phi3-forward.ts, gemma3-forward.ts), plain
 * loops over one sequence: vectors are Float64Array, a sequence is one vector per position, weights
 * are [out, in] row-major as Hugging Face stores them.
 */

/** y = W·x, W [out, in] */
export function matvec(W: Float64Array, x: Float64Array, out: number, inn: number): Float64Array {
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < inn; i++) s += W[o * inn + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

/** x / √(mean(x²) + eps) · (offset + w): offset 0 for Llama/Phi-3, 1 for Gemma's zero-centred weights */
export function rmsNorm(x: Float64Array, w: Float64Array, eps: number, offset = 0): Float64Array {
  let ms = 0;
  for (const v of x) ms += v * v;
  const r = 1 / Math.sqrt(ms / x.length + eps);
  return x.map((v, i) => v * r * (offset + w[i]!));
}

/**
 * One head's vector after RoPE at position `pos`: channel pairs (j, j + rot/2) of the first `rot`
 * channels rotate by pos·inv[j] (transformers' rotate_half layout), cos and sin times `scale`; the
 * other channels pass through.
 */
export function rotate(x: Float64Array, pos: number, inv: ArrayLike<number>, rot: number, scale = 1): Float64Array {
  const out = Float64Array.from(x);
  const half = rot / 2;
  for (let j = 0; j < half; j++) {
    const c = Math.cos(pos * inv[j]!) * scale;
    const s = Math.sin(pos * inv[j]!) * scale;
    out[j] = x[j]! * c - x[j + half]! * s;
    out[j + half] = x[j + half]! * c + x[j]! * s;
  }
  return out;
}

/**
 * Causal multi-head attention over one sequence with grouped KV heads: q[t] holds nh heads of hd,
 * k[t] and v[t] nkv heads; query head h reads KV head ⌊h·nkv/nh⌋. Query t sees key u iff u ≤ t and,
 * with a window, t − u < window. Scores are scaled by `scale`. Returns the merged heads per position.
 */
export function attention(q: Float64Array[], k: Float64Array[], v: Float64Array[], a: { nh: number; nkv: number; hd: number; scale: number; window?: number }): Float64Array[] {
  const { nh, nkv, hd } = a;
  return q.map((qt, t) => {
    const ctx = new Float64Array(nh * hd);
    for (let h = 0; h < nh; h++) {
      const kv = Math.floor((h * nkv) / nh);
      const seen: number[] = [];
      for (let u = 0; u <= t; u++) if (a.window === undefined || t - u < a.window) seen.push(u);
      const scores = seen.map((u) => {
        let s = 0;
        for (let d = 0; d < hd; d++) s += qt[h * hd + d]! * k[u]![kv * hd + d]!;
        return s * a.scale;
      });
      const max = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - max));
      const z = e.reduce((x, y) => x + y, 0);
      seen.forEach((u, i) => {
        for (let d = 0; d < hd; d++) ctx[h * hd + d] += (e[i]! / z) * v[u]![kv * hd + d]!;
      });
    }
    return ctx;
  });
}

export const silu = (x: number): number => x / (1 + Math.exp(-x));
export const geluTanh = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/** Each head of a merged vector [n·hd] through f. */
export function perHead(x: Float64Array, n: number, hd: number, f: (head: Float64Array, h: number) => Float64Array): Float64Array {
  const out = new Float64Array(n * hd);
  for (let h = 0; h < n; h++) out.set(f(x.subarray(h * hd, (h + 1) * hd), h), h * hd);
  return out;
}
