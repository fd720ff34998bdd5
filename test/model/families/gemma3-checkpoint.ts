import type { CheckpointSpec, TensorSpec } from '../../../fixtures/generate-models.js';

/**
 * A seeded tiny Gemma 3 (text) checkpoint (data only; the tests generate it with generateCheckpoint):
 * hidden 44 ≠ 4 heads × head_dim 12, intermediate 37, vocab 61, 2 KV heads, 4 layers with
 * sliding_window_pattern 3 (sliding, sliding, full, sliding) and an 8-token window, local and global
 * RoPE bases with linear scaling on the global one, query_pre_attn_scalar 20 (≠ head_dim), final
 * soft-capping at 3, zero-centred norm weights, tied lm_head.
 */
export function gemma3Spec(): CheckpointSpec {
  const c = {
    hidden_size: 44,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 12,
    intermediate_size: 37,
    vocab_size: 61,
  };
  const config = {
    architectures: ['Gemma3ForCausalLM'],
    model_type: 'gemma3_text',
    ...c,
    hidden_activation: 'gelu_pytorch_tanh',
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    rope_local_base_freq: 10000.0,
    rope_scaling: { rope_type: 'linear', factor: 2.0 },
    sliding_window: 8,
    sliding_window_pattern: 3,
    query_pre_attn_scalar: 20,
    final_logit_softcapping: 3.0,
    attn_logit_softcapping: null,
    attention_bias: false,
    max_position_embeddings: 128,
    tie_word_embeddings: true,
    cache_implementation: 'hybrid',
    bos_token_id: 2,
    eos_token_id: 1,
    pad_token_id: 0,
    torch_dtype: 'float32',
  };
  const { hidden_size: H, num_attention_heads: nh, num_key_value_heads: nkv, head_dim: hd, intermediate_size: F } = c;
  const t = (name: string, shape: number[], std: number): TensorSpec => ({ name, shape, mean: 0, std });
  const tensors: TensorSpec[] = [t('model.embed_tokens.weight', [c.vocab_size, H], 0.3)];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const m = `model.layers.${i}`;
    tensors.push(
      t(`${m}.input_layernorm.weight`, [H], 0.15),
      t(`${m}.self_attn.q_proj.weight`, [nh * hd, H], 0.25),
      t(`${m}.self_attn.k_proj.weight`, [nkv * hd, H], 0.25),
      t(`${m}.self_attn.v_proj.weight`, [nkv * hd, H], 0.25),
      t(`${m}.self_attn.o_proj.weight`, [H, nh * hd], 0.15),
      t(`${m}.self_attn.q_norm.weight`, [hd], 0.15),
      t(`${m}.self_attn.k_norm.weight`, [hd], 0.15),
      t(`${m}.post_attention_layernorm.weight`, [H], 0.15),
      t(`${m}.pre_feedforward_layernorm.weight`, [H], 0.15),
      t(`${m}.mlp.gate_proj.weight`, [F, H], 0.25),
      t(`${m}.mlp.up_proj.weight`, [F, H], 0.25),
      t(`${m}.mlp.down_proj.weight`, [H, F], 0.15),
      t(`${m}.post_feedforward_layernorm.weight`, [H], 0.15),
    );
  }
  tensors.push(t('model.norm.weight', [H], 0.15));
  return { name: 'tiny-gemma3', config, tensors };
}
