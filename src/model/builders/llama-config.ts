import { UserError } from '../../errors.js';
import { configReader } from './graph-builder.js';
import { inverseFrequencies, readRopeConfig } from './rope.js';

/**
 * The Llama architecture and the families that differ from it by a switch or two (Qwen2's q/k/v
 * biases, Qwen3's per-head q/k RMSNorm), with config.json read and checked once for all of them.
 */
export interface LlamaVariant {
  /** for messages: 'Qwen2' */
  name: string;
  /** the ONNX graph's name */
  graphName: string;
  /** q_proj, k_proj and v_proj add a bias (Qwen2; o_proj has none) */
  qkvBias: boolean;
  /** RMSNorm over head_dim of each query and key head before RoPE, weights [head_dim] (Qwen3) */
  qkNorm: boolean;
  /** config.json keys this variant reads or knows to be irrelevant to the forward pass (beyond GENERIC_CONFIG_KEYS) */
  configKeys: readonly string[];
}

/**
 * Keys of Hugging Face's PretrainedConfig and of saved configs that do not change what a decoder
 * computes at inference (ids, dtypes, training-only dropout and init, tool metadata).
 */
export const GENERIC_CONFIG_KEYS: readonly string[] = [
  '_name_or_path', 'architectures', 'auto_map', 'model_type', 'transformers_version', 'torch_dtype', 'dtype',
  'bos_token_id', 'eos_token_id', 'pad_token_id', 'use_cache', 'initializer_range', 'max_position_embeddings',
  'attention_dropout', 'tokenizer_class', 'transformers.js_config', 'output_attentions', 'output_hidden_states',
  'return_dict', 'id2label', 'label2id', 'quantization_config',
];

/** What every Llama-architecture family reads. */
export const LLAMA_FAMILY_KEYS: readonly string[] = [
  'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'intermediate_size', 'vocab_size',
  'head_dim', 'rms_norm_eps', 'rope_theta', 'rope_scaling', 'rope_parameters', 'hidden_act', 'tie_word_embeddings',
];

export const LLAMA: LlamaVariant = {
  name: 'Llama',
  graphName: 'llama',
  qkvBias: false,
  qkNorm: false,
  // pretraining_tp only splits the projections' arithmetic; rope_interleaved and is_llama_config are
  // nanotron's, which Hugging Face's Llama ignores
  configKeys: [...LLAMA_FAMILY_KEYS, 'attention_bias', 'mlp_bias', 'pretraining_tp', 'rope_interleaved', 'is_llama_config'],
};

/** The sizes and constants a Llama-architecture graph is built from. */
export interface LlamaShape {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  eps: number;
  /** RoPE's inverse frequencies [head_dim / 2], scaling applied */
  invFreq: Float64Array;
}

export function readLlamaConfig(config: Record<string, unknown>, configPath: string, variant: LlamaVariant): LlamaShape {
  const c = configReader(config, configPath);
  const hidden = c.int('hidden_size');
  const heads = c.int('num_attention_heads');
  if (config.head_dim == null && hidden % heads !== 0) {
    throw new UserError(`${configPath}: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}; set head_dim`);
  }
  const shape = {
    hidden,
    layers: c.int('num_hidden_layers'),
    heads,
    kvHeads: c.int('num_key_value_heads', heads),
    headDim: config.head_dim == null ? hidden / heads : c.int('head_dim'),
    ffn: c.int('intermediate_size'),
    vocab: c.int('vocab_size'),
    eps: c.num('rms_norm_eps', 1e-6),
  };
  const act = config.hidden_act ?? 'silu';
  if (act !== 'silu') throw new UserError(`${configPath}: hidden_act ${JSON.stringify(act)} is not supported; ${variant.name} uses silu`);
  if (config.attention_bias === true && variant.configKeys.includes('attention_bias')) throw new UserError(`${configPath}: attention_bias true is not supported for ${variant.name}; its projections have ${variant.qkvBias ? 'q/k/v biases only' : 'no bias'}`);
  if (config.mlp_bias === true) throw new UserError(`${configPath}: mlp_bias true is not supported; ${variant.name}'s MLP has no bias`);
  if (config.pretraining_tp !== undefined && !(Number.isInteger(config.pretraining_tp) && (config.pretraining_tp as number) >= 1)) {
    throw new UserError(`${configPath}: pretraining_tp must be a positive integer, found ${JSON.stringify(config.pretraining_tp)}`);
  }
  checkFullAttention(config, configPath, variant);
  if (shape.heads % shape.kvHeads !== 0) throw new UserError(`${configPath}: num_attention_heads ${shape.heads} is not a multiple of num_key_value_heads ${shape.kvHeads}`);
  if (shape.headDim % 2 !== 0) throw new UserError(`${configPath}: head_dim ${shape.headDim} must be even for RoPE`);
  return { ...shape, invFreq: inverseFrequencies(shape.headDim, readRopeConfig(config, configPath, 10000)) };
}

/**
 * Qwen2/Qwen3's sliding-window attention: pare builds full causal attention, so a window that could
 * cut it short is refused (a window at least max_position_embeddings long never does).
 */
function checkFullAttention(config: Record<string, unknown>, configPath: string, variant: LlamaVariant): void {
  const types = config.layer_types;
  if (types !== undefined && types !== null) {
    const other = Array.isArray(types) ? types.findIndex((t) => t !== 'full_attention') : 0;
    if (other >= 0) {
      throw new UserError(`${configPath}: layer_types[${other}] is ${JSON.stringify(Array.isArray(types) ? types[other] : types)}; pare builds ${variant.name} with full attention in every layer`);
    }
  }
  if (config.use_sliding_window !== true) return;
  const window = config.sliding_window;
  const longest = config.max_position_embeddings;
  if (typeof window === 'number' && typeof longest === 'number' && window >= longest) return;
  // Qwen2 slides only in layers from max_window_layers on
  const fullLayers = config.max_window_layers;
  if (variant.configKeys.includes('max_window_layers') && typeof fullLayers === 'number' && fullLayers >= (config.num_hidden_layers as number)) return;
  throw new UserError(
    `${configPath}: use_sliding_window true with sliding_window ${JSON.stringify(window)} below max_position_embeddings ${JSON.stringify(longest)} is not supported; pare builds full causal attention (set use_sliding_window false if the model was trained without it)`,
  );
}
