/**
 * RoPE inverse frequencies in closed form, as transformers' modeling_rope_utils computes them for
 * the rotary channels of a head (dim = head_dim · partial_rotary_factor):
 *   default:  inv_freq[i] = 1 / θ^(2i/dim),  i = 0 … dim/2 − 1
 *   linear:   inv_freq[i] / factor
 *   longrope: inv_freq[i] / short_factor[i] while max(position_ids) + 1 ≤ original_max_position_embeddings,
 *             inv_freq[i] / long_factor[i] beyond; cos and sin scaled by the attention factor
 *             attention_factor, or √(1 + ln(factor) / ln(original_max)) when factor > 1 (else 1), where
 *             factor = max_position_embeddings / original_max_position_embeddings
 * (LongRoPE, Ding et al. 2024; Phi-3 and Phi-3.5 ship it). Values are float64; the graph stores them
 * as float32 constants.
 */

export function defaultInvFreq(theta: number, dim: number): Float64Array {
  return Float64Array.from({ length: dim / 2 }, (_, i) => 1 / theta ** ((2 * i) / dim));
}

export function linearInvFreq(theta: number, dim: number, factor: number): Float64Array {
  return defaultInvFreq(theta, dim).map((f) => f / factor);
}

export interface Longrope {
  /** inverse frequencies while the sequence fits original_max_position_embeddings */
  short: Float64Array;
  /** inverse frequencies beyond it */
  long: Float64Array;
  /** the switch: long once max(position_ids) + 1 > originalMax */
  originalMax: number;
  /** multiplies cos and sin */
  attentionFactor: number;
}

export function longropeFrequencies(p: {
  theta: number;
  dim: number;
  shortFactor: readonly number[];
  longFactor: readonly number[];
  originalMax: number;
  /** max_position_embeddings / original_max_position_embeddings (or rope_scaling.factor) */
  factor: number;
  /** rope_scaling.attention_factor when given */
  attentionFactor?: number;
}): Longrope {
  const base = defaultInvFreq(p.theta, p.dim);
  const attentionFactor = p.attentionFactor ?? (p.factor <= 1 ? 1 : Math.sqrt(1 + Math.log(p.factor) / Math.log(p.originalMax)));
  return {
    short: base.map((f, i) => f / p.shortFactor[i]!),
    long: base.map((f, i) => f / p.longFactor[i]!),
    originalMax: p.originalMax,
    attentionFactor,
  };
}
