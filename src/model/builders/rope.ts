import { UserError } from '../../errors.js';

/**
 * RoPE's inverse frequencies from config.json, as Hugging Face's `ROPE_INIT_FUNCTIONS` compute them:
 * default θ^(−2i/d) for i < d/2, and Llama 3.1's scaling (`rope_type: "llama3"`) of those. Other
 * rope types change more than the frequencies (attention scaling, sequence-dependent tables) and
 * are refused by name. `rope_theta` and `rope_scaling` may also come as transformers 5's
 * `rope_parameters` (one object holding both).
 */

export interface Llama3Scaling {
  factor: number;
  low_freq_factor: number;
  high_freq_factor: number;
  original_max_position_embeddings: number;
}

export interface RopeConfig {
  theta: number;
  /** undefined for plain RoPE */
  llama3?: Llama3Scaling;
}

/** 1/θ^(2i/d), i = 0 … d/2 − 1, as Hugging Face computes it */
export function defaultInverseFrequencies(headDim: number, theta: number): Float64Array {
  return Float64Array.from({ length: headDim / 2 }, (_, i) => 1 / theta ** ((2 * i) / headDim));
}

/**
 * Llama 3.1's frequency scaling: with wavelength λ = 2π/f, L = original_max_position_embeddings,
 * frequencies of λ < L/high_freq_factor are kept, those of λ > L/low_freq_factor are divided by
 * `factor`, and in between s = (L/λ − low)/(high − low) interpolates f' = (1 − s)·f/factor + s·f.
 */
export function llama3InverseFrequencies(base: Float64Array, s: Llama3Scaling): Float64Array {
  const L = s.original_max_position_embeddings;
  const lowWavelen = L / s.low_freq_factor;
  const highWavelen = L / s.high_freq_factor;
  return base.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (L / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

export function inverseFrequencies(headDim: number, rope: RopeConfig): Float64Array {
  const base = defaultInverseFrequencies(headDim, rope.theta);
  return rope.llama3 ? llama3InverseFrequencies(base, rope.llama3) : base;
}

/** rope_theta (default `theta`) and rope_scaling (or rope_parameters) of a config.json, checked. */
export function readRopeConfig(config: Record<string, unknown>, configPath: string, theta: number): RopeConfig {
  const params = config.rope_parameters;
  if (params != null && config.rope_scaling != null) throw new UserError(`${configPath}: both rope_scaling and rope_parameters are set; keep one`);
  const key = params != null ? 'rope_parameters' : 'rope_scaling';
  const scaling = (params ?? config.rope_scaling) as unknown;
  const positive = (where: Record<string, unknown>, name: string, path: string) => {
    const v = where[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new UserError(`${configPath}: ${path}.${name} must be a positive number, found ${JSON.stringify(v)}`);
    return v;
  };
  let ropeTheta: unknown = config.rope_theta ?? theta;
  if (scaling == null) return { theta: checkTheta(ropeTheta, configPath, 'rope_theta') };
  if (typeof scaling !== 'object' || Array.isArray(scaling)) throw new UserError(`${configPath}: ${key} must be an object or null, found ${JSON.stringify(scaling)}`);
  const s = scaling as Record<string, unknown>;
  if (key === 'rope_parameters' && s.rope_theta !== undefined) ropeTheta = s.rope_theta;
  const type = s.rope_type ?? s.type ?? 'default';
  const known = new Set(['rope_type', 'type', ...(key === 'rope_parameters' ? ['rope_theta'] : [])]);
  if (type === 'llama3') for (const k of ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings']) known.add(k);
  else if (type !== 'default') {
    throw new UserError(`${configPath}: ${key}.rope_type ${JSON.stringify(type)} is not supported; pare builds plain RoPE and "llama3" scaling`);
  }
  const extra = Object.keys(s).filter((k) => !known.has(k));
  if (extra.length) throw new UserError(`${configPath}: ${key}.${extra[0]} is not understood for rope_type ${JSON.stringify(type)}; remove it or export the model to .onnx`);
  const rope: RopeConfig = { theta: checkTheta(ropeTheta, configPath, key === 'rope_parameters' && s.rope_theta !== undefined ? 'rope_parameters.rope_theta' : 'rope_theta') };
  if (type === 'llama3') {
    const llama3 = {
      factor: positive(s, 'factor', key),
      low_freq_factor: positive(s, 'low_freq_factor', key),
      high_freq_factor: positive(s, 'high_freq_factor', key),
      original_max_position_embeddings: positive(s, 'original_max_position_embeddings', key),
    };
    if (llama3.high_freq_factor <= llama3.low_freq_factor) {
      throw new UserError(`${configPath}: ${key}.high_freq_factor ${llama3.high_freq_factor} must be above low_freq_factor ${llama3.low_freq_factor}`);
    }
    rope.llama3 = llama3;
  }
  return rope;
}

function checkTheta(v: unknown, configPath: string, key: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 1) throw new UserError(`${configPath}: ${key} must be a number above 1, found ${JSON.stringify(v)}`);
  return v;
}
