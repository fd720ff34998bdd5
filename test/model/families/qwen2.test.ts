import { describe } from 'vitest';
import { llamaFamilyForward } from '../../reference/llama-family-forward.js';
import { cachedDecodeTest, referenceTests, tinyCheckpoint } from './conformance.js';
import { everyPassTests } from './every-pass.js';
import { QWEN2, refConfig } from './llama-families.js';
import { CAST, MAGNITUDE, QUANTIZED, STRUCTURED, writeBackTests } from './write-back.js';

describe('qwen2: tiny random checkpoint', () => {
  const ck = tinyCheckpoint(QWEN2);
  referenceTests(QWEN2, ck, (c, ids) => llamaFamilyForward(c.values, refConfig(c.config), ids));
  cachedDecodeTest(QWEN2, ck);
  everyPassTests(QWEN2, ck);
  writeBackTests(QWEN2, ck, [
    { name: 'prune.magnitude 50 %', passes: MAGNITUDE, config: { num_hidden_layers: 3, intermediate_size: 88 }, tensors: { 'model.layers.0.self_attn.q_proj.bias': ['F32', [48]] } },
    {
      name: 'int8 attention + 4-bit group-16 gate/up',
      passes: QUANTIZED,
      config: { quantization_config: { quant_method: 'pare' } },
      tensors: {
        'model.layers.0.self_attn.q_proj.weight': ['I8', [48, 48]],
        'model.layers.0.self_attn.q_proj.bias': ['F32', [48]],
        'model.layers.2.mlp.up_proj.weight_packed': ['I32', [88, 6]],
        'model.layers.2.mlp.up_proj.weight_scale': ['F32', [88, 3]],
      },
    },
    { name: 'fp16 cast', passes: CAST, config: { tie_word_embeddings: false }, tensors: { 'lm_head.weight': ['F16', [97, 48]], 'model.layers.1.mlp.down_proj.weight': ['F16', [48, 88]], 'model.layers.1.self_attn.k_proj.bias': ['F32', [16]] } },
    {
      name: 'prune.channels + prune.heads + prune.layers',
      passes: STRUCTURED,
      calibration: true,
      config: { num_hidden_layers: 2, intermediate_size: 66, num_attention_heads: 3, num_key_value_heads: 1, hidden_size: 48 },
      tensors: {
        'model.layers.1.self_attn.q_proj.weight': ['F32', [24, 48]],
        'model.layers.1.self_attn.q_proj.bias': ['F32', [24]],
        'model.layers.1.self_attn.k_proj.bias': ['F32', [8]],
        'model.layers.1.self_attn.v_proj.bias': ['F32', [8]],
        'model.layers.1.mlp.down_proj.weight': ['F32', [48, 66]],
      },
      absent: ['model.layers.2.self_attn.q_proj.bias'],
    },
  ]);
});
