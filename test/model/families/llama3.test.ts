import { describe } from 'vitest';
import { llamaFamilyForward } from '../../reference/llama-family-forward.js';
import { cachedDecodeTest, referenceTests, tinyCheckpoint } from './conformance.js';
import { everyPassTests, TIED_HEAD_REFUSAL } from './every-pass.js';
import { LLAMA3, refConfig } from './llama-families.js';
import { CAST_BLOCKS, MAGNITUDE, QUANTIZED, STRUCTURED, writeBackTests } from './write-back.js';

describe('llama with llama3 rope scaling and head_dim: tiny random checkpoint', () => {
  const ck = tinyCheckpoint(LLAMA3);
  referenceTests(LLAMA3, ck, (c, ids) => llamaFamilyForward(c.values, refConfig(c.config), ids));
  cachedDecodeTest(LLAMA3, ck);
  everyPassTests(LLAMA3, ck, { 'share.embeddings': { refuses: TIED_HEAD_REFUSAL } });
  writeBackTests(LLAMA3, ck, [
    { name: 'prune.magnitude 50 %', passes: MAGNITUDE, config: { num_hidden_layers: 3, head_dim: 12 }, tensors: {  'model.layers.0.self_attn.q_proj.weight': ['F32', [72, 48]] } },
    {
      name: 'int8 attention + 4-bit group-16 gate/up',
      passes: QUANTIZED,
      config: { quantization_config: { quant_method: 'pare' } },
      tensors: { 'model.layers.0.self_attn.o_proj.weight': ['I8', [48, 72]], 'model.layers.0.self_attn.o_proj.weight_scale': ['F32', [48, 1]], 'model.layers.2.mlp.gate_proj.weight_packed': ['I32', [88, 6]] },
    },
    { name: 'fp16 cast of the blocks', passes: CAST_BLOCKS, config: { tie_word_embeddings: true }, tensors: { 'model.layers.1.mlp.down_proj.weight': ['F16', [48, 88]] }, absent: ['lm_head.weight'] },
    {
      name: 'prune.channels + prune.heads + prune.layers',
      passes: STRUCTURED,
      calibration: true,
      config: { num_hidden_layers: 2, intermediate_size: 66, num_attention_heads: 3, num_key_value_heads: 1, head_dim: 12, hidden_size: 48 },
      tensors: {  'model.layers.1.self_attn.q_proj.weight': ['F32', [36, 48]], 'model.layers.1.self_attn.k_proj.weight': ['F32', [12, 48]], 'model.layers.1.self_attn.o_proj.weight': ['F32', [48, 36]] },
      absent: ['model.layers.2.self_attn.q_proj.weight'],
    },
  ]);
});
