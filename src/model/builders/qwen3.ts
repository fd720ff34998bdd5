import { LLAMA_FAMILY_KEYS, type LlamaVariant } from './llama-config.js';
import { buildLlamaFamily } from './llama.js';

/**
 * Hugging Face `Qwen3ForCausalLM` (dense Qwen3): Llama with an RMSNorm over head_dim on every query
 * and key head before RoPE (q_norm, k_norm: weights [head_dim] shared by the heads), an explicit
 * head_dim, no biases (attention_bias true is refused). Sliding-window attention as for Qwen2.
 */
export const QWEN3: LlamaVariant = {
  name: 'Qwen3',
  graphName: 'qwen3',
  qkvBias: false,
  qkNorm: true,
  configKeys: [...LLAMA_FAMILY_KEYS, 'attention_bias', 'use_sliding_window', 'sliding_window', 'max_window_layers', 'layer_types'],
};

export const buildQwen3 = buildLlamaFamily(QWEN3);
