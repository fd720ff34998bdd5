import type { LlamaFamilyRefConfig } from '../../reference/llama-family-forward.js';
import { normal, type TinyFamily, type TinyTensor } from './checkpoints.js';

/**
 * Tiny Llama-architecture checkpoints as Llama 3.2, Qwen2.5 and Qwen3 save them, at odd sizes that
 * catch transposes: hidden 48, 6 query heads over 2 KV heads, head_dim 12 (≠ 48/6 where the family
 * allows it), intermediate 88, vocab 97, 3 layers. Weights std 0.15 make q·k/√d and the MLP's
 * pre-activations of order 1, so softmax, SiLU and the norms all matter.
 */

const SIZES = { hidden_size: 48, intermediate_size: 88, num_hidden_layers: 3, num_attention_heads: 6, num_key_value_heads: 2, vocab_size: 97 };
const STD = 0.15;

/** The tensors of a Llama-architecture config: optional q/k/v biases and q/k norms as the config's model_type has them. */
function llamaTensors(config: Record<string, unknown>): TinyTensor[] {
  const H = config.hidden_size as number;
  const F = config.intermediate_size as number;
  const nh = config.num_attention_heads as number;
  const nkv = config.num_key_value_heads as number;
  const d = (config.head_dim as number | undefined) ?? H / nh;
  const vocab = config.vocab_size as number;
  const norm = (n: string, len: number) => normal(n, [len], 0.1, 1);
  const tensors: TinyTensor[] = [normal('model.embed_tokens.weight', [vocab, H], STD)];
  for (let i = 0; i < (config.num_hidden_layers as number); i++) {
    const m = `model.layers.${i}`;
    const a = `${m}.self_attn`;
    tensors.push(norm(`${m}.input_layernorm.weight`, H), normal(`${a}.q_proj.weight`, [nh * d, H], STD));
    if (config.model_type === 'qwen2') tensors.push(normal(`${a}.q_proj.bias`, [nh * d], 0.5));
    tensors.push(normal(`${a}.k_proj.weight`, [nkv * d, H], STD));
    if (config.model_type === 'qwen2') tensors.push(normal(`${a}.k_proj.bias`, [nkv * d], 0.5));
    tensors.push(normal(`${a}.v_proj.weight`, [nkv * d, H], STD));
    if (config.model_type === 'qwen2') tensors.push(normal(`${a}.v_proj.bias`, [nkv * d], 0.5));
    tensors.push(normal(`${a}.o_proj.weight`, [H, nh * d], STD));
    if (config.model_type === 'qwen3') tensors.push(norm(`${a}.q_norm.weight`, d), norm(`${a}.k_norm.weight`, d));
    tensors.push(
      norm(`${m}.post_attention_layernorm.weight`, H),
      normal(`${m}.mlp.gate_proj.weight`, [F, H], STD),
      normal(`${m}.mlp.up_proj.weight`, [F, H], STD),
      normal(`${m}.mlp.down_proj.weight`, [H, F], STD),
    );
  }
  tensors.push(norm('model.norm.weight', H));
  if (config.tie_word_embeddings === false) tensors.push(normal('lm_head.weight', [vocab, H], STD));
  return tensors;
}

/** Llama 3.2's config layout: llama3 rope scaling (original context 64 puts one of the six frequencies in each regime), head_dim apart from hidden/heads, tied head. */
export const LLAMA3: TinyFamily = {
  modelType: 'llama',
  config: {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    ...SIZES,
    head_dim: 12,
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    hidden_act: 'silu',
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
    rope_theta: 500000.0,
    rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 64, rope_type: 'llama3' },
    pretraining_tp: 1,
    tie_word_embeddings: true,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
    use_cache: true,
  },
  tensors: llamaTensors,
};

/** Qwen2.5's config layout: q/k/v biases, rope_theta 1e6, head_dim from hidden/heads, untied head (as the 7B; the 0.5B ties it). */
export const QWEN2: TinyFamily = {
  modelType: 'qwen2',
  config: {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    ...SIZES,
    attention_dropout: 0.0,
    hidden_act: 'silu',
    max_position_embeddings: 512,
    max_window_layers: 3,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    sliding_window: 512,
    use_sliding_window: false,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
    use_cache: true,
  },
  tensors: llamaTensors,
};

/** Qwen3's config layout: q_norm/k_norm, explicit head_dim 12 (≠ 48/6), no biases, tied head. */
export const QWEN3: TinyFamily = {
  modelType: 'qwen3',
  config: {
    architectures: ['Qwen3ForCausalLM'],
    model_type: 'qwen3',
    ...SIZES,
    head_dim: 12,
    attention_bias: false,
    attention_dropout: 0.0,
    hidden_act: 'silu',
    max_position_embeddings: 512,
    max_window_layers: 3,
    rms_norm_eps: 1e-6,
    rope_scaling: null,
    rope_theta: 1000000,
    sliding_window: null,
    use_sliding_window: false,
    tie_word_embeddings: true,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
    use_cache: true,
  },
  tensors: llamaTensors,
};

/** The reference's view of one of these configs. */
export function refConfig(config: Record<string, unknown>): LlamaFamilyRefConfig {
  const H = config.hidden_size as number;
  const nh = config.num_attention_heads as number;
  const scaling = config.rope_scaling as LlamaFamilyRefConfig['llama3'] & { rope_type?: string } | null | undefined;
  return {
    hidden_size: H,
    num_hidden_layers: config.num_hidden_layers as number,
    num_attention_heads: nh,
    num_key_value_heads: config.num_key_value_heads as number,
    head_dim: (config.head_dim as number | undefined) ?? H / nh,
    intermediate_size: config.intermediate_size as number,
    vocab_size: config.vocab_size as number,
    rms_norm_eps: config.rms_norm_eps as number,
    rope_theta: config.rope_theta as number,
    llama3: scaling?.rope_type === 'llama3' ? scaling : undefined,
    qkv_bias: config.model_type === 'qwen2',
    qk_norm: config.model_type === 'qwen3',
    tie_word_embeddings: config.tie_word_embeddings !== false,
  };
}
