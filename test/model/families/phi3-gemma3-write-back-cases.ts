import type { CheckpointSpec } from '../../../fixtures/generate-models.js';
import { gemma3Spec } from './gemma3-checkpoint.js';
import { phi3Spec } from './phi3-checkpoint.js';

/**
 * Per-family data for the compress → safetensors write-back → reload test: recipes (their `passes:`
 * lists) and what the written config.json and tensors must then say.
 */
export interface WriteBackCase {
  family: string;
  spec: CheckpointSpec;
  recipes: {
    name: string;
    passes: string;
    calibration: boolean;
    /** config.json values after the run */
    config: Record<string, unknown>;
    /** config.json keys the run removes */
    dropped?: string[];
    /** tensor name → [dtype, shape] in the written file */
    tensors: Record<string, [string, number[]]>;
  }[];
}

const pass = (id: string, targets: string[], params = '') => `  - pass: ${id}\n    targets: [${targets.map((t) => `"${t}"`).join(', ')}]\n${params ? `    params: { ${params} }\n` : ''}`;

export const WRITE_BACK_CASES: WriteBackCase[] = [
  {
    family: 'phi3',
    spec: phi3Spec(),
    recipes: [
      {
        name: 'structured',
        calibration: true,
        passes:
          pass('prune.heads', ['layers.*.self_attn.*'], 'sparsity: 0.5, importance: weight') +
          pass('prune.channels', ['layers.*.mlp.*'], 'sparsity: 0.3, importance: weight') +
          pass('prune.layers', ['layers.*'], 'count: 1') +
          pass('quantize.rtn', ['layers.*.self_attn.qkv_proj'], 'bits: 8, granularity: channel') +
          pass('quantize.cast', ['lm_head']),
        // 3 of 6 heads (1 of 2 KV groups), round(37 · 0.7) = 26 channels, 2 of 3 blocks
        config: { num_hidden_layers: 2, num_attention_heads: 3, num_key_value_heads: 1, head_dim: 8, intermediate_size: 26, hidden_size: 44 },
        tensors: {
          'model.layers.1.self_attn.qkv_proj.weight': ['I8', [40, 44]],
          'model.layers.1.self_attn.qkv_proj.weight_scale': ['F32', [40, 1]],
          'model.layers.1.mlp.gate_up_proj.weight': ['F32', [52, 44]],
          'model.layers.1.mlp.down_proj.weight': ['F32', [44, 26]],
          'lm_head.weight': ['F16', [61, 44]],
        },
      },
      {
        name: 'quantized',
        calibration: true,
        passes:
          pass('quantize.smoothquant', ['layers.*'], 'alpha: 0.5') +
          pass('quantize.rtn', ['layers.*.self_attn.o_proj'], 'bits: 4, granularity: group, group_size: 16') +
          pass('quantize.rtn', ['layers.*.mlp.gate_up_proj'], 'bits: 8, symmetric: false'),
        config: { num_hidden_layers: 3, num_attention_heads: 6, intermediate_size: 37 },
        tensors: {
          'model.layers.0.self_attn.o_proj.weight_packed': ['I32', [44, 6]],
          'model.layers.0.self_attn.o_proj.weight_scale': ['F32', [44, 3]],
          'model.layers.2.mlp.gate_up_proj.weight': ['I8', [74, 44]],
          'model.layers.2.mlp.gate_up_proj.weight_zero_point': ['I8', [74, 1]],
        },
      },
    ],
  },
  {
    family: 'gemma3_text',
    spec: gemma3Spec(),
    recipes: [
      {
        name: 'structured',
        calibration: true,
        passes:
          pass('prune.heads', ['layers.*.self_attn.*'], 'sparsity: 0.5, importance: weight') +
          pass('prune.channels', ['layers.*.mlp.*'], 'sparsity: 0.3, importance: weight') +
          pass('prune.layers', ['layers.*'], 'blocks: [0]') +
          pass('quantize.rtn', ['layers.*.mlp.*'], 'bits: 8, granularity: channel'),
        // block 0 gone: sliding, full, sliding no longer follows sliding_window_pattern 3
        config: { num_hidden_layers: 3, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 12, intermediate_size: 26, layer_types: ['sliding_attention', 'full_attention', 'sliding_attention'] },
        dropped: ['sliding_window_pattern'],
        tensors: {
          'model.layers.0.self_attn.q_proj.weight': ['F32', [24, 44]],
          'model.layers.0.self_attn.q_norm.weight': ['F32', [12]],
          'model.layers.0.pre_feedforward_layernorm.weight': ['F32', [44]],
          'model.layers.0.mlp.up_proj.weight': ['I8', [26, 44]],
        },
      },
      {
        name: 'quantized',
        calibration: true,
        passes:
          pass('quantize.smoothquant', ['layers.*'], 'alpha: 0.5') +
          pass('quantize.rtn', ['layers.*.self_attn.o_proj'], 'bits: 4, granularity: group, group_size: 16, symmetric: false') +
          pass('quantize.rtn', ['layers.*.self_attn.q_proj', 'layers.*.self_attn.k_proj', 'layers.*.self_attn.v_proj'], 'bits: 8, granularity: tensor') +
          pass('quantize.cast', ['layers.*.mlp.*'], 'dtype: bfloat16'),
        config: { num_hidden_layers: 4, sliding_window_pattern: 3 },
        tensors: {
          'model.layers.3.self_attn.o_proj.weight_packed': ['I32', [44, 6]],
          'model.layers.3.self_attn.o_proj.weight_zero_point': ['I8', [44, 3]],
          'model.layers.0.self_attn.v_proj.weight_scale': ['F32', [1]],
          'model.layers.1.mlp.down_proj.weight': ['BF16', [44, 37]],
        },
      },
    ],
  },
];
