import { UserError } from '../../errors.js';
import { DataType } from '../dtype.js';
import { LLAMA_BLOCKS, type BlockLayout } from '../llama-export.js';
import type { Model } from '../model.js';
import { fromFloat32, toFloat32 } from '../pack.js';
import { readQuantizationConfig } from '../quantized-safetensors.js';
import type { SafetensorsFile } from '../safetensors.js';
import { checkConfigKeys, expectValue } from './config-keys.js';
import { DecoderOps } from './decoder-ops.js';
import { attr, type BuildOptions, causalMask, configReader, GraphBuilder, positions } from './graph-builder.js';
import { KvCache } from './kv-cache.js';
import { defaultInvFreq, linearInvFreq } from './rope-frequencies.js';
import { slidingWindowMask } from './sliding-window.js';

/**
 * Hugging Face `Gemma3ForCausalLM` (model_type gemma3_text: Gemma 3 1B and the text half of the
 * larger ones) as an ONNX graph. Differences from Llama, each in transformers' own form:
 * - RMSNorm scales by (1 + w) (zero-centred weights), in float32;
 * - the embedding is multiplied by √hidden_size rounded to the embedding's dtype (bfloat16: √1152 → 34);
 * - GeGLU MLP: down(gelu_tanh(gate(x)) · up(x));
 * - norms before and after both attention and MLP (input_layernorm → attention → post_attention_layernorm
 *   → residual; pre_feedforward_layernorm → MLP → post_feedforward_layernorm → residual);
 * - q_norm/k_norm, (1 + w) RMSNorms over head_dim, on each head before RoPE;
 * - sliding-window layers (layer_types, or every layer but each sliding_window_pattern-th) whose mask
 *   hides keys sliding_window or more tokens back and whose RoPE uses rope_local_base_freq; full
 *   layers use rope_theta with rope_scaling (linear);
 * - attention scores scaled by query_pre_attn_scalar^−½; logits soft-capped when
 *   final_logit_softcapping is set; lm_head tied to the embedding by default.
 * The KV cache keeps every layer's whole past; sliding layers forget through the mask (sliding-window.ts).
 */

const READS = [
  'hidden_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'intermediate_size',
  'vocab_size',
  'head_dim',
  'hidden_activation',
  // transformers' Gemma 3 reads hidden_activation only
  'hidden_act',
  'rms_norm_eps',
  'rope_theta',
  'rope_local_base_freq',
  'rope_scaling',
  'rope_parameters',
  'sliding_window',
  'sliding_window_pattern',
  '_sliding_window_pattern',
  'layer_types',
  'query_pre_attn_scalar',
  'final_logit_softcapping',
  'attn_logit_softcapping',
  'attention_bias',
  'use_bidirectional_attention',
  'tie_word_embeddings',
  'quantization_config',
  'cache_implementation',
];

export type AttentionKind = 'sliding_attention' | 'full_attention';

/** Each layer's attention: layer_types when given, else sliding but for every sliding_window_pattern-th layer (default 6). */
export function gemma3LayerTypes(config: Record<string, unknown>, configPath: string, layers: number): AttentionKind[] {
  const types = config.layer_types;
  if (types != null) {
    if (!Array.isArray(types) || types.length !== layers || !types.every((t) => t === 'sliding_attention' || t === 'full_attention')) {
      throw new UserError(`${configPath}: layer_types must list ${layers} entries, each "sliding_attention" or "full_attention", found ${JSON.stringify(types)}`);
    }
    return types as AttentionKind[];
  }
  const key = config.sliding_window_pattern != null ? 'sliding_window_pattern' : '_sliding_window_pattern';
  const pattern = config[key] ?? 6;
  if (typeof pattern !== 'number' || !Number.isInteger(pattern) || pattern < 1) throw new UserError(`${configPath}: ${key} must be a positive integer, found ${JSON.stringify(pattern)}`);
  return Array.from({ length: layers }, (_, i) => ((i + 1) % pattern === 0 ? 'full_attention' : 'sliding_attention'));
}

/** Inverse frequencies of each attention kind: rope_theta (+ linear rope_scaling) for full layers, rope_local_base_freq for sliding ones. */
export function gemma3Rope(config: Record<string, unknown>, configPath: string, headDim: number): Record<AttentionKind, Float64Array> {
  const positive = (v: unknown, what: string, fallback: number) => {
    const x = v ?? fallback;
    if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0) throw new UserError(`${configPath}: ${what} must be a positive number, found ${JSON.stringify(v)}`);
    return x;
  };
  const frequencies = (raw: unknown, key: string, theta: number) => {
    if (raw != null && (typeof raw !== 'object' || Array.isArray(raw))) throw new UserError(`${configPath}: ${key} must be an object or null, found ${JSON.stringify(raw)}`);
    const rs = (raw ?? {}) as Record<string, unknown>;
    for (const k of Object.keys(rs)) if (!['type', 'rope_type', 'factor', 'rope_theta'].includes(k)) throw new UserError(`${configPath}: ${key}.${k} is not understood by pare's gemma3_text builder`);
    const base = positive(rs.rope_theta, `${key}.rope_theta`, theta);
    const type = rs.rope_type ?? rs.type ?? 'default';
    if (type === 'default') return defaultInvFreq(base, headDim);
    if (type === 'linear') return linearInvFreq(base, headDim, positive(rs.factor, `${key}.factor`, NaN));
    throw new UserError(`${configPath}: ${key} type ${JSON.stringify(type)} is not supported for gemma3_text; pare builds default and linear RoPE`);
  };
  const params = config.rope_parameters;
  if (params != null) {
    // transformers 5: one entry per attention kind
    const p = params as Record<string, unknown>;
    for (const k of Object.keys(p)) if (k !== 'full_attention' && k !== 'sliding_attention') throw new UserError(`${configPath}: rope_parameters.${k} is not an attention kind (full_attention, sliding_attention)`);
    return {
      full_attention: frequencies(p.full_attention, 'rope_parameters.full_attention', positive(config.rope_theta, 'rope_theta', 1e6)),
      sliding_attention: frequencies(p.sliding_attention, 'rope_parameters.sliding_attention', positive(config.rope_local_base_freq, 'rope_local_base_freq', 1e4)),
    };
  }
  return {
    full_attention: frequencies(config.rope_scaling, 'rope_scaling', positive(config.rope_theta, 'rope_theta', 1e6)),
    sliding_attention: defaultInvFreq(positive(config.rope_local_base_freq, 'rope_local_base_freq', 1e4), headDim),
  };
}

/** √hidden as transformers multiplies the embedding by it: a float32 scalar cast to the embedding's dtype. */
export function gemma3EmbedScale(hidden: number, dataType: number): number {
  const f32 = Float32Array.of(Math.sqrt(hidden));
  return dataType === DataType.FLOAT16 || dataType === DataType.BFLOAT16 ? toFloat32(dataType, fromFloat32(dataType, f32), 1)[0]! : f32[0]!;
}

/**
 * Write-back: Llama's projections, head_dim read with Gemma's default (256), and the attention kind of
 * every surviving block: layer_types is written when the source had it or when the kinds left no
 * longer follow sliding_window_pattern (which is then dropped, since it would describe other layers).
 */
export const GEMMA3_BLOCKS: BlockLayout = {
  ...LLAMA_BLOCKS,
  name: 'Gemma 3',
  headDim: (c) => (typeof c.head_dim === 'number' ? c.head_dim : 256),
  blockConfig(config, kept) {
    const types = gemma3LayerTypes(config, 'config.json', config.num_hidden_layers as number);
    const left = kept.map((i) => types[i]!);
    const patternKey = ['sliding_window_pattern', '_sliding_window_pattern'].find((k) => config[k] != null);
    const pattern = patternKey ? (config[patternKey] as number) : 6;
    const follows = left.every((t, i) => t === ((i + 1) % pattern === 0 ? 'full_attention' : 'sliding_attention'));
    if (follows && config.layer_types == null) return {};
    return { layer_types: left, ...(patternKey && !follows ? { [patternKey]: undefined } : {}) };
  },
};

export function buildGemma3(st: SafetensorsFile, config: Record<string, unknown>, configPath: string, opts: BuildOptions = {}): Model {
  checkConfigKeys(config, configPath, 'gemma3_text', READS);
  const c = configReader(config, configPath);
  const H = c.int('hidden_size');
  const layers = c.layers('num_hidden_layers', st.tensors.size, st.path);
  const nh = c.int('num_attention_heads');
  // transformers' Gemma3TextConfig defaults, where they differ from Llama's
  const nkv = c.int('num_key_value_heads', 4);
  const hd = c.int('head_dim', 256);
  const F = c.int('intermediate_size');
  const vocab = c.int('vocab_size');
  const eps = c.num('rms_norm_eps', 1e-6);
  const queryScalar = c.num('query_pre_attn_scalar', 256);
  const window = c.int('sliding_window', 4096);
  expectValue(config, configPath, 'hidden_activation', ['gelu_pytorch_tanh'], 'Gemma 3 uses gelu_pytorch_tanh');
  expectValue(config, configPath, 'attention_bias', [false], 'Gemma 3 projections have no bias');
  expectValue(config, configPath, 'use_bidirectional_attention', [false], 'pare builds causal decoders; EmbeddingGemma-style bidirectional attention is not one');
  if (config.attn_logit_softcapping != null) {
    throw new UserError(`${configPath}: attn_logit_softcapping ${JSON.stringify(config.attn_logit_softcapping)} is set, but transformers' Gemma 3 attention never applies it (Gemma 2's does); set it to null to build what transformers computes`);
  }
  const finalCap = config.final_logit_softcapping == null ? undefined : c.num('final_logit_softcapping', NaN);
  if (finalCap !== undefined && !(finalCap > 0)) throw new UserError(`${configPath}: final_logit_softcapping must be a positive number or null, found ${finalCap}`);
  if (!(queryScalar > 0)) throw new UserError(`${configPath}: query_pre_attn_scalar must be positive, found ${queryScalar}`);
  if (nh % nkv !== 0) throw new UserError(`${configPath}: num_attention_heads ${nh} is not a multiple of num_key_value_heads ${nkv}`);
  if (hd % 2 !== 0) throw new UserError(`${configPath}: head_dim ${hd} must be even for RoPE`);
  const kinds = gemma3LayerTypes(config, configPath, layers);
  const invFreq = gemma3Rope(config, configPath, hd);

  const g = new GraphBuilder(st, `a Gemma 3 model with ${layers} layers`);
  const shapes: [string, number[]][] = [['model.embed_tokens.weight', [vocab, H]], ['lm_head.weight', [vocab, H]], ['model.norm.weight', [H]]];
  for (let i = 0; i < layers; i++) {
    const m = `model.layers.${i}`;
    shapes.push(
      [`${m}.self_attn.q_proj.weight`, [nh * hd, H]],
      [`${m}.self_attn.k_proj.weight`, [nkv * hd, H]],
      [`${m}.self_attn.v_proj.weight`, [nkv * hd, H]],
      [`${m}.self_attn.o_proj.weight`, [H, nh * hd]],
      [`${m}.self_attn.q_norm.weight`, [hd]],
      [`${m}.self_attn.k_norm.weight`, [hd]],
      [`${m}.mlp.gate_proj.weight`, [F, H]],
      [`${m}.mlp.up_proj.weight`, [F, H]],
      [`${m}.mlp.down_proj.weight`, [H, F]],
      ...['input_layernorm', 'post_attention_layernorm', 'pre_feedforward_layernorm', 'post_feedforward_layernorm'].map((n): [string, number[]] => [`${m}.${n}.weight`, [H]]),
    );
  }
  const quantized = readQuantizationConfig(config, configPath);
  for (const [name, shape] of shapes) if (!quantized.has(name.replace(/\.weight$/, ''))) g.expectShape(name, shape);
  const ops = new DecoderOps(g, quantized, new Map(shapes));
  const norm = (x: string, weight: string, path: string) => ops.rmsNorm(x, weight, eps, path, 1);

  const cache = opts.kvCache !== false ? new KvCache(g, { layers, heads: nkv, headDim: hd }) : undefined;
  const pos = cache ? cache.positions : positions(g);
  const causal = cache ? cache.mask() : causalMask(g, pos);
  // only the masks and RoPE tables some layer uses
  const masks = new Map<AttentionKind, string>();
  const tables = new Map<AttentionKind, { cos: string; sin: string }>();
  for (const kind of new Set(kinds)) {
    masks.set(kind, kind === 'sliding_attention' ? slidingWindowMask(g, causal, window, cache !== undefined) : causal);
    tables.set(kind, ops.ropeTables(pos, g.floats(invFreq[kind], [hd / 2]), cache !== undefined, 1, kind === 'sliding_attention' ? '/rotary_local' : '/rotary'));
  }

  const embedType = st.tensors.get('model.embed_tokens.weight')?.dataType ?? DataType.FLOAT;
  const tokens = g.op('Gather', [g.weight('model.embed_tokens.weight'), 'input_ids'], '/embed_tokens/Gather', [attr.int('axis', 0)]);
  let h = g.op('Mul', [tokens, g.scalar(gemma3EmbedScale(H, embedType))], '/embed_tokens/Mul');
  for (let i = 0; i < layers; i++) {
    const p = `/layers.${i}`;
    const m = `model.layers.${i}`;
    const kind = kinds[i]!;
    const xn = norm(h, `${m}.input_layernorm.weight`, `${p}/input_layernorm`);
    const headsOf = (proj: 'q' | 'k' | 'v', n: number) => ops.heads(ops.linear(xn, `${m}.self_attn.${proj}_proj.weight`, `${p}/self_attn/${proj}_proj`), n, hd, `${p}/self_attn/${proj}`);
    const q = ops.rope(norm(headsOf('q', nh), `${m}.self_attn.q_norm.weight`, `${p}/self_attn/q_norm`), tables.get(kind)!, hd, hd, `${p}/self_attn/rotary_q`);
    let k = ops.rope(norm(headsOf('k', nkv), `${m}.self_attn.k_norm.weight`, `${p}/self_attn/k_norm`), tables.get(kind)!, hd, hd, `${p}/self_attn/rotary_k`);
    let v = headsOf('v', nkv);
    if (cache) [k, v] = cache.append(i, k, v, `${p}/self_attn`);
    const merged = ops.attention(q, k, v, masks.get(kind)!, { nh, nkv, hd, scale: queryScalar ** -0.5 }, `${p}/self_attn`);
    const attnOut = norm(ops.linear(merged, `${m}.self_attn.o_proj.weight`, `${p}/self_attn/o_proj`), `${m}.post_attention_layernorm.weight`, `${p}/post_attention_layernorm`);
    h = g.op('Add', [h, attnOut], `${p}/Add`);
    // GeGLU: down(gelu_tanh(gate(x)) · up(x)), between the pre- and post-feedforward norms
    const xm = norm(h, `${m}.pre_feedforward_layernorm.weight`, `${p}/pre_feedforward_layernorm`);
    const gate = ops.geluTanh(ops.linear(xm, `${m}.mlp.gate_proj.weight`, `${p}/mlp/gate_proj`), `${p}/mlp/act_fn`);
    const up = ops.linear(xm, `${m}.mlp.up_proj.weight`, `${p}/mlp/up_proj`);
    const down = ops.linear(g.op('Mul', [gate, up], `${p}/mlp/Mul`), `${m}.mlp.down_proj.weight`, `${p}/mlp/down_proj`);
    h = g.op('Add', [h, norm(down, `${m}.post_feedforward_layernorm.weight`, `${p}/post_feedforward_layernorm`)], `${p}/Add_1`);
  }
  const final = norm(h, 'model.norm.weight', '/norm');
  const hasHead = g.has('lm_head.weight') || quantized.has('lm_head');
  const tied = config.tie_word_embeddings ?? true;
  if (!tied && !hasHead) throw new UserError(`${st.path}: tensor 'lm_head.weight' is missing and ${configPath} sets tie_word_embeddings false`);
  const logits = ops.linear(final, tied ? 'model.embed_tokens.weight' : 'lm_head.weight', '/lm_head');
  return g.finish('gemma3_text', finalCap === undefined ? logits : ops.softcap(logits, finalCap, '/softcap'), vocab, cache?.io(vocab));
}
