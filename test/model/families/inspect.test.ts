import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FAMILIES, unknownConfigKeys } from '../../../src/model/builders/index.js';
import { runCli } from '../../cli/run-cli.js';
import { tempDir } from '../../helpers.js';
import { writeTinyCheckpoint } from './checkpoints.js';
import { QWEN2, QWEN3 } from './llama-families.js';

/** `pare inspect` on safetensors checkpoints pare cannot build, or whose config.json has keys it does not know. */

const tmp = tempDir('pare-inspect-families-');
afterAll(() => tmp.cleanup());

/** config.json of checkpoints people start from, as published (values shortened where they do not matter) */
const PUBLISHED: Record<string, Record<string, unknown>> = {
  'Qwen2.5-0.5B': {
    architectures: ['Qwen2ForCausalLM'], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151643, hidden_act: 'silu', hidden_size: 896,
    initializer_range: 0.02, intermediate_size: 4864, max_position_embeddings: 32768, max_window_layers: 24, model_type: 'qwen2', num_attention_heads: 14,
    num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1000000.0, sliding_window: 32768, tie_word_embeddings: true,
    torch_dtype: 'bfloat16', transformers_version: '4.40.1', use_cache: true, use_sliding_window: false, vocab_size: 151936,
  },
  'Qwen3-0.6B': {
    architectures: ['Qwen3ForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645, head_dim: 128,
    hidden_act: 'silu', hidden_size: 1024, initializer_range: 0.02, intermediate_size: 3072, max_position_embeddings: 40960, max_window_layers: 28,
    model_type: 'qwen3', num_attention_heads: 16, num_hidden_layers: 28, num_key_value_heads: 8, rms_norm_eps: 1e-6, rope_scaling: null,
    rope_theta: 1000000, sliding_window: null, tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.51.0', use_cache: true,
    use_sliding_window: false, vocab_size: 151936,
  },
  'Llama-3.2-1B': {
    architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 128000, eos_token_id: 128001, head_dim: 64,
    hidden_act: 'silu', hidden_size: 2048, initializer_range: 0.02, intermediate_size: 8192, max_position_embeddings: 131072, mlp_bias: false,
    model_type: 'llama', num_attention_heads: 32, num_hidden_layers: 16, num_key_value_heads: 8, pretraining_tp: 1, rms_norm_eps: 1e-5,
    rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
    rope_theta: 500000.0, tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.45.0.dev0', use_cache: true, vocab_size: 128256,
  },
  'SmolLM2-135M': {
    architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 0, eos_token_id: 0, hidden_act: 'silu',
    hidden_size: 576, initializer_range: 0.041666666666666664, intermediate_size: 1536, is_llama_config: true, max_position_embeddings: 8192,
    model_type: 'llama', num_attention_heads: 9, num_hidden_layers: 30, num_key_value_heads: 3, pretraining_tp: 1, rms_norm_eps: 1e-5,
    rope_interleaved: false, rope_scaling: null, rope_theta: 100000, tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.42.3',
    'transformers.js_config': { kv_cache_dtype: { q4f16: 'float16', fp16: 'float16' } }, use_cache: true, vocab_size: 49152,
  },
};

describe('config.json keys', () => {
  for (const [name, config] of Object.entries(PUBLISHED)) {
    it(`${name}: every key of its config.json is understood`, () => {
      expect(unknownConfigKeys(config)).toEqual([]);
    });
  }

  it('a key one family reads is unknown to another (attention_bias means nothing to Qwen2)', () => {
    expect(unknownConfigKeys({ ...PUBLISHED['Qwen2.5-0.5B'], attention_bias: false })).toEqual(['attention_bias']);
  });
});

describe('pare inspect on safetensors', () => {
  it('a model_type pare cannot build: the supported model_types and the config keys no family knows, exit 0', async () => {
    const ck = writeTinyCheckpoint(QWEN2, join(tmp.dir, 'bert'));
    writeFileSync(join(ck.dir, 'config.json'), JSON.stringify({ model_type: 'bert', hidden_size: 48, type_vocab_size: 2, layer_norm_eps: 1e-12 }));
    const r = await runCli(['inspect', ck.path]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`supported model_type: ${Object.keys(FAMILIES).join(', ')}`);
    expect(r.out).toMatch(/cannot build: .*config\.json: model_type "bert" has no graph builder/);
    expect(r.out).toContain('config keys not understood: type_vocab_size, layer_norm_eps');
    const json = JSON.parse((await runCli(['inspect', ck.path, '--json'])).out);
    expect(json).toMatchObject({ supported_model_types: Object.keys(FAMILIES), unknown_config_keys: ['type_vocab_size', 'layer_norm_eps'] });
    expect(json.supported_model_types).toEqual(expect.arrayContaining(['llama', 'qwen2', 'qwen3']));
  });

  it('a supported model_type with a value pare cannot build: the reason, naming the key, and the supported types', async () => {
    const ck = writeTinyCheckpoint(QWEN3, join(tmp.dir, 'yarn'), { overrides: { rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32768 } } });
    const json = JSON.parse((await runCli(['inspect', ck.path, '--json'])).out);
    expect(json.build_problem).toMatch(/config\.json: rope_scaling\.rope_type "yarn" is not supported/);
    expect(json.supported_model_types).toEqual(Object.keys(FAMILIES));
    expect(json).not.toHaveProperty('family');
  });

  it('a buildable checkpoint with keys pare does not know: a warning line on stderr naming them, the family on stdout', async () => {
    const ck = writeTinyCheckpoint(QWEN3, join(tmp.dir, 'extra'), { overrides: { rope_interleaved: true, partial_rotary_factor: 0.5 } });
    const r = await runCli(['inspect', ck.path]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('builds as: Qwen3');
    expect(r.err.trim().split('\n')).toEqual(['warning: config.json keys pare does not understand, ignored when building: rope_interleaved, partial_rotary_factor']);
    const clean = writeTinyCheckpoint(QWEN3, join(tmp.dir, 'clean'));
    const quiet = await runCli(['inspect', clean.path]);
    expect(quiet.err).toBe('');
    expect(JSON.parse((await runCli(['inspect', clean.path, '--json'])).out)).toMatchObject({ family: 'Qwen3' });
  });

  it('pare compress on it says the same in the report and on stderr', async () => {
    const ck = writeTinyCheckpoint(QWEN3, join(tmp.dir, 'extra-compress'), { overrides: { partial_rotary_factor: 0.5 } });
    const recipe = join(tmp.dir, 'magnitude.yaml');
    writeFileSync(recipe, 'version: 1\npasses:\n  - pass: prune.magnitude\n    targets: ["layers.*"]\n');
    const r = await runCli(['compress', ck.path, '-r', recipe, '-o', join(tmp.dir, 'out.onnx'), '--json', '--threads', '1', '--progress']);
    expect(r.code, r.err).toBe(0);
    const warning = 'config.json keys pare does not understand, ignored when building: partial_rotary_factor';
    expect(JSON.parse(r.out).warnings).toEqual([warning]);
    expect(r.err).toContain(warning);
  });
});
