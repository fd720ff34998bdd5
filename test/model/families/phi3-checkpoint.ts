import type { CheckpointSpec, TensorSpec } from '../../../fixtures/generate-models.js';

/**
 * Seeded tiny Phi-3 checkpoints (data only; the tests generate them with generateCheckpoint): odd
 * sizes that catch a transposed weight (hidden 44 ≠ 6 heads × head_dim 8, intermediate 37, vocab 61),
 * grouped-query attention (6 query heads over 2 KV heads), 3 layers, partial rotary 0.75 (6 of 8
 * channels), LongRoPE switching at 24 tokens, a 40-token sliding window, untied lm_head. `plain`
 * drops the RoPE extras so the model is a Llama with fused projections.
 */
export function phi3Spec(opts: { plain?: boolean } = {}): CheckpointSpec {
  const c = {
    hidden_size: 44,
    num_hidden_layers: 3,
    num_attention_heads: 6,
    num_key_value_heads: 2,
    head_dim: 8,
    intermediate_size: 37,
    vocab_size: 61,
  };
  const extras = opts.plain
    ? {}
    : {
        partial_rotary_factor: 0.75,
        original_max_position_embeddings: 24,
        rope_scaling: { type: 'longrope', short_factor: [1, 1.3, 2.1], long_factor: [1.5, 3.2, 7.9] },
        sliding_window: 40,
      };
  const config = {
    architectures: ['Phi3ForCausalLM'],
    model_type: 'phi3',
    ...c,
    hidden_act: 'silu',
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    max_position_embeddings: 96,
    ...extras,
    tie_word_embeddings: false,
    embd_pdrop: 0.0,
    resid_pdrop: 0.0,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
  };
  const { hidden_size: H, num_attention_heads: nh, num_key_value_heads: nkv, head_dim: hd, intermediate_size: F } = c;
  const t = (name: string, shape: number[], std: number, mean = 0): TensorSpec => ({ name, shape, mean, std });
  const tensors: TensorSpec[] = [t('model.embed_tokens.weight', [c.vocab_size, H], 1)];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const m = `model.layers.${i}`;
    tensors.push(
      t(`${m}.input_layernorm.weight`, [H], 0.1, 1),
      t(`${m}.self_attn.qkv_proj.weight`, [(nh + 2 * nkv) * hd, H], 0.25),
      t(`${m}.self_attn.o_proj.weight`, [H, nh * hd], 0.15),
      t(`${m}.post_attention_layernorm.weight`, [H], 0.1, 1),
      t(`${m}.mlp.gate_up_proj.weight`, [2 * F, H], 0.25),
      t(`${m}.mlp.down_proj.weight`, [H, F], 0.15),
    );
  }
  tensors.push(t('model.norm.weight', [H], 0.1, 1), t('lm_head.weight', [c.vocab_size, H], 0.3));
  return { name: opts.plain ? 'tiny-phi3-plain' : 'tiny-phi3', config, tensors };
}
