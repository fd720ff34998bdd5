import { UserError } from '../../errors.js';
import { LLAMA_BLOCKS, type BlockLayout } from '../llama-export.js';
import type { Model } from '../model.js';
import { readQuantizationConfig } from '../quantized-safetensors.js';
import type { SafetensorsFile } from '../safetensors.js';
import { checkConfigKeys, expectValue } from './config-keys.js';
import { DecoderOps } from './decoder-ops.js';
import { attr, type BuildOptions, causalMask, configReader, GraphBuilder, positions } from './graph-builder.js';
import { KvCache } from './kv-cache.js';
import { defaultInvFreq, longropeFrequencies, type Longrope } from './rope-frequencies.js';
import { slidingWindowMask } from './sliding-window.js';

/**
 * Hugging Face `Phi3ForCausalLM` (Phi-3, Phi-3.5-mini, Phi-4-mini) as an ONNX graph: Llama's
 * pre-RMSNorm blocks with two fused projections, each one MatMul whose output a Split cuts:
 *   qkv_proj [(nh + 2·nkv)·hd, H] → q, k, v (rows in that order);  gate_up_proj [2·F, H] → gate, up
 * (so `layers.3.self_attn.qkv_proj` is one layer, as in the checkpoint), SwiGLU up·silu(gate), RoPE on
 * the first head_dim·partial_rotary_factor channels of each head, LongRoPE (rope_scaling type
 * longrope/su: short or long factors chosen by max(position_ids) + 1 against
 * original_max_position_embeddings, cos and sin times the attention factor; rope-frequencies.ts),
 * sliding_window as a mask on every layer (sliding-window.ts), an untied lm_head by default.
 * With `kvCache` (the default), Optimum's decoder-with-past I/O (kv-cache.ts).
 */

const READS = [
  'hidden_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'intermediate_size',
  'vocab_size',
  'head_dim',
  'hidden_act',
  'rms_norm_eps',
  'rope_theta',
  'rope_scaling',
  'rope_parameters',
  'partial_rotary_factor',
  'original_max_position_embeddings',
  'sliding_window',
  'tie_word_embeddings',
  'quantization_config',
  'attention_bias',
  'mlp_bias',
  'lm_head_bias',
  // Phi-3 training and Phi-4-mini remnants transformers' Phi3 ignores
  'embd_pdrop',
  'resid_pdrop',
  'full_attn_mod',
  'interpolate_factor',
];

/** RoPE of a Phi-3 config: rotary channels per head, and plain or LongRoPE frequencies. */
export interface Phi3Rope {
  rotaryDim: number;
  /** plain RoPE */
  invFreq?: Float64Array;
  longrope?: Longrope;
}

const ROPE_KEYS = new Set(['type', 'rope_type', 'short_factor', 'long_factor', 'factor', 'attention_factor', 'original_max_position_embeddings', 'rope_theta', 'partial_rotary_factor']);

/** Reads rope_theta, partial_rotary_factor and rope_scaling (or transformers 5's rope_parameters). */
export function phi3Rope(config: Record<string, unknown>, configPath: string, headDim: number): Phi3Rope {
  const key = config.rope_parameters != null ? 'rope_parameters' : 'rope_scaling';
  const raw = config[key];
  if (raw != null && (typeof raw !== 'object' || Array.isArray(raw))) throw new UserError(`${configPath}: ${key} must be an object or null, found ${JSON.stringify(raw)}`);
  const rs = (raw ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(rs)) if (!ROPE_KEYS.has(k)) throw new UserError(`${configPath}: ${key}.${k} is not understood by pare's phi3 builder (it reads ${[...ROPE_KEYS].join(', ')})`);
  const num = (v: unknown, what: string, fallback?: number) => {
    const x = v ?? fallback;
    if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0) throw new UserError(`${configPath}: ${what} must be a positive number, found ${JSON.stringify(v)}`);
    return x;
  };
  const theta = num(rs.rope_theta ?? config.rope_theta, 'rope_theta', 10000);
  const partial = num(rs.partial_rotary_factor ?? config.partial_rotary_factor, 'partial_rotary_factor', 1);
  const rotaryDim = Math.floor(headDim * partial);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0 || partial > 1) {
    throw new UserError(`${configPath}: partial_rotary_factor ${partial} gives ${rotaryDim} rotary channels of head_dim ${headDim}; pare needs an even count from 2 to head_dim`);
  }
  const type = rs.rope_type ?? rs.type ?? 'default';
  if (type === 'default') return { rotaryDim, invFreq: defaultInvFreq(theta, rotaryDim) };
  if (type !== 'longrope' && type !== 'su') {
    throw new UserError(`${configPath}: ${key} type ${JSON.stringify(type)} is not supported for phi3; pare builds plain RoPE and longrope (su)`);
  }
  const factors = (k: 'short_factor' | 'long_factor') => {
    const f = rs[k];
    if (!Array.isArray(f) || f.length !== rotaryDim / 2 || !f.every((x) => typeof x === 'number' && x > 0)) {
      throw new UserError(`${configPath}: ${key}.${k} must list ${rotaryDim / 2} positive numbers (one per rotary frequency), found ${Array.isArray(f) ? `${f.length} entries` : JSON.stringify(f)}`);
    }
    return f as number[];
  };
  // transformers: with original_max_position_embeddings the factor is max / original, else rope_scaling.factor
  const originalKey = config.original_max_position_embeddings ?? rs.original_max_position_embeddings;
  const maxPositions = num(config.max_position_embeddings, 'max_position_embeddings', 4096);
  const originalMax = originalKey === undefined ? maxPositions : num(originalKey, 'original_max_position_embeddings');
  if (!Number.isInteger(originalMax)) throw new UserError(`${configPath}: original_max_position_embeddings must be an integer, found ${originalMax}`);
  const factor = originalKey === undefined ? num(rs.factor, `${key}.factor`, 1) : maxPositions / originalMax;
  const attentionFactor = rs.attention_factor == null ? undefined : num(rs.attention_factor, `${key}.attention_factor`);
  return {
    rotaryDim,
    longrope: longropeFrequencies({ theta, dim: rotaryDim, shortFactor: factors('short_factor'), longFactor: factors('long_factor'), originalMax, factor, attentionFactor }),
  };
}

/**
 * Write-back: the fused tensors keep their names and their part order, and give config.json's
 * sizes: heads = o_proj columns / head_dim, KV heads = (qkv_proj rows − o_proj columns) / (2·head_dim),
 * intermediate_size = gate_up_proj rows / 2.
 */
export const PHI3_BLOCKS: BlockLayout = {
  name: 'Phi-3',
  projections: ['self_attn.qkv_proj', 'self_attn.o_proj', 'mlp.gate_up_proj', 'mlp.down_proj'],
  headDim: LLAMA_BLOCKS.headDim,
  widths(m, hidden, hd) {
    const [qkv, o, gateUp, down] = PHI3_BLOCKS.projections.map(m) as [number, number][];
    const kvRows = (qkv![0] - o![1]) / 2;
    if (gateUp![0] !== 2 * down![1] || !Number.isInteger(kvRows) || kvRows <= 0 || [qkv![1], o![0], gateUp![1], down![0]].some((d) => d !== hidden)) {
      return `projections do not fit together (qkv ${qkv}, o ${o}, gate_up ${gateUp}, down ${down})`;
    }
    if (o![1] % hd !== 0 || kvRows % hd !== 0) return `o_proj columns ${o![1]} / KV rows ${kvRows} of qkv_proj are not whole heads of head_dim ${hd}`;
    return { ffn: down![1], heads: o![1] / hd, kv: kvRows / hd };
  },
};

export function buildPhi3(st: SafetensorsFile, config: Record<string, unknown>, configPath: string, opts: BuildOptions = {}): Model {
  checkConfigKeys(config, configPath, 'phi3', READS);
  const c = configReader(config, configPath);
  const H = c.int('hidden_size');
  const layers = c.layers('num_hidden_layers', st.tensors.size, st.path);
  const nh = c.int('num_attention_heads');
  const nkv = c.int('num_key_value_heads', nh);
  const F = c.int('intermediate_size');
  const vocab = c.int('vocab_size');
  if (config.head_dim == null && H % nh !== 0) throw new UserError(`${configPath}: hidden_size ${H} is not a multiple of num_attention_heads ${nh}; set head_dim`);
  const hd = c.int('head_dim', H / nh);
  const eps = c.num('rms_norm_eps', 1e-5);
  expectValue(config, configPath, 'hidden_act', ['silu'], 'Phi-3 uses silu');
  for (const k of ['attention_bias', 'mlp_bias', 'lm_head_bias']) expectValue(config, configPath, k, [false], 'Phi-3 projections have no bias');
  for (const k of ['full_attn_mod', 'interpolate_factor']) expectValue(config, configPath, k, [1], 'transformers reads only the value 1');
  if (nh % nkv !== 0) throw new UserError(`${configPath}: num_attention_heads ${nh} is not a multiple of num_key_value_heads ${nkv}`);
  const rope = phi3Rope(config, configPath, hd);
  const window = config.sliding_window == null ? undefined : c.int('sliding_window');

  const g = new GraphBuilder(st, `a Phi-3 model with ${layers} layers`);
  const qkvRows = (nh + 2 * nkv) * hd;
  const shapes: [string, number[]][] = [['model.embed_tokens.weight', [vocab, H]], ['lm_head.weight', [vocab, H]], ['model.norm.weight', [H]]];
  for (let i = 0; i < layers; i++) {
    const m = `model.layers.${i}`;
    shapes.push(
      [`${m}.self_attn.qkv_proj.weight`, [qkvRows, H]],
      [`${m}.self_attn.o_proj.weight`, [H, nh * hd]],
      [`${m}.mlp.gate_up_proj.weight`, [2 * F, H]],
      [`${m}.mlp.down_proj.weight`, [H, F]],
      [`${m}.input_layernorm.weight`, [H]],
      [`${m}.post_attention_layernorm.weight`, [H]],
    );
  }
  const quantized = readQuantizationConfig(config, configPath);
  for (const [name, shape] of shapes) if (!quantized.has(name.replace(/\.weight$/, ''))) g.expectShape(name, shape);
  const ops = new DecoderOps(g, quantized, new Map(shapes));

  const cache = opts.kvCache !== false ? new KvCache(g, { layers, heads: nkv, headDim: hd }) : undefined;
  const pos = cache ? cache.positions : positions(g);
  const causal = cache ? cache.mask() : causalMask(g, pos);
  const mask = window === undefined ? causal : slidingWindowMask(g, causal, window, cache !== undefined);
  const tables = ropeTables(g, ops, rope, pos, cache !== undefined);

  let h = g.op('Gather', [g.weight('model.embed_tokens.weight'), 'input_ids'], '/embed_tokens/Gather', [attr.int('axis', 0)]);
  for (let i = 0; i < layers; i++) {
    const p = `/layers.${i}`;
    const m = `model.layers.${i}`;
    const xn = ops.rmsNorm(h, `${m}.input_layernorm.weight`, eps, `${p}/input_layernorm`);
    const qkv = ops.linear(xn, `${m}.self_attn.qkv_proj.weight`, `${p}/self_attn/qkv_proj`);
    const [qf, kf, vf] = g.opMulti('Split', [qkv, g.int64s([nh * hd, nkv * hd, nkv * hd])], `${p}/self_attn/Split`, 3, [attr.int('axis', -1)]) as [string, string, string];
    const q = ops.rope(ops.heads(qf, nh, hd, `${p}/self_attn/q`), tables, hd, rope.rotaryDim, `${p}/self_attn/rotary_q`);
    let k = ops.rope(ops.heads(kf, nkv, hd, `${p}/self_attn/k`), tables, hd, rope.rotaryDim, `${p}/self_attn/rotary_k`);
    let v = ops.heads(vf, nkv, hd, `${p}/self_attn/v`);
    if (cache) [k, v] = cache.append(i, k, v, `${p}/self_attn`);
    const merged = ops.attention(q, k, v, mask, { nh, nkv, hd, scale: 1 / Math.sqrt(hd) }, `${p}/self_attn`);
    h = g.op('Add', [h, ops.linear(merged, `${m}.self_attn.o_proj.weight`, `${p}/self_attn/o_proj`)], `${p}/Add`);
    // SwiGLU over the fused projection: down(up · silu(gate))
    const xm = ops.rmsNorm(h, `${m}.post_attention_layernorm.weight`, eps, `${p}/post_attention_layernorm`);
    const gateUp = ops.linear(xm, `${m}.mlp.gate_up_proj.weight`, `${p}/mlp/gate_up_proj`);
    const [gate, up] = g.opMulti('Split', [gateUp, g.int64s([F, F])], `${p}/mlp/Split`, 2, [attr.int('axis', -1)]) as [string, string];
    const act = g.op('Mul', [up, ops.silu(gate, `${p}/mlp/act_fn`)], `${p}/mlp/Mul`);
    h = g.op('Add', [h, ops.linear(act, `${m}.mlp.down_proj.weight`, `${p}/mlp/down_proj`)], `${p}/Add_1`);
  }
  const final = ops.rmsNorm(h, 'model.norm.weight', eps, '/norm');
  const hasHead = g.has('lm_head.weight') || quantized.has('lm_head');
  const tied = config.tie_word_embeddings ?? !hasHead;
  if (!tied && !hasHead) throw new UserError(`${st.path}: tensor 'lm_head.weight' is missing and ${configPath} sets tie_word_embeddings false`);
  const logits = ops.linear(final, tied ? 'model.embed_tokens.weight' : 'lm_head.weight', '/lm_head');
  return g.finish('phi3', logits, vocab, cache?.io(vocab));
}

/**
 * cos/sin tables [·, 1, S, rotaryDim]. LongRoPE picks its frequencies per run, as transformers'
 * longrope_frequency_update does: long once max(position_ids) + 1 > original_max_position_embeddings.
 */
function ropeTables(g: GraphBuilder, ops: DecoderOps, rope: Phi3Rope, pos: string, kvCache: boolean): { cos: string; sin: string } {
  const half = rope.rotaryDim / 2;
  if (rope.invFreq) return ops.ropeTables(pos, g.floats(rope.invFreq, [half]), kvCache, 1, '/rotary');
  const lr = rope.longrope!;
  const last = g.op('ReduceMax', [pos], '/rotary/ReduceMax', [attr.int('keepdims', 0)]);
  const long = g.op('Greater', [last, g.int64s([lr.originalMax - 1], true)], '/rotary/Greater');
  const invFreq = g.op('Where', [long, g.floats(lr.long, [half]), g.floats(lr.short, [half])], '/rotary/Where');
  return ops.ropeTables(pos, invFreq, kvCache, lr.attentionFactor, '/rotary');
}
