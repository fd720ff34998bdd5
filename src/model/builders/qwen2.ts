import { LLAMA_FAMILY_KEYS, type LlamaVariant } from './llama-config.js';
import { buildLlamaFamily } from './llama.js';

/**
 * Hugging Face `Qwen2ForCausalLM` (Qwen2, Qwen2.5): Llama with biases on q_proj, k_proj and v_proj
 * (o_proj has none), rope_theta 1e6, tied or untied head. Sliding-window attention
 * (use_sliding_window) is refused unless the window covers every position.
 */
export const QWEN2: LlamaVariant = {
  name: 'Qwen2',
  graphName: 'qwen2',
  qkvBias: true,
  qkNorm: false,
  configKeys: [...LLAMA_FAMILY_KEYS, 'use_sliding_window', 'sliding_window', 'max_window_layers', 'layer_types'],
};

export const buildQwen2 = buildLlamaFamily(QWEN2);
