import { UserError } from '../../errors.js';

/**
 * config.json keys no builder reads because they cannot change the forward pass of a causal LM in
 * inference: identity, token ids, training-only dropout and initialisation, generation defaults and
 * the dtype the weights were saved in (the safetensors header says that).
 */
export const INERT_CONFIG_KEYS: readonly string[] = [
  '_name_or_path',
  'architectures',
  'auto_map',
  'model_type',
  'transformers_version',
  'torch_dtype',
  'dtype',
  'bos_token_id',
  'eos_token_id',
  'pad_token_id',
  'initializer_range',
  'attention_dropout',
  'use_cache',
  'max_position_embeddings',
];

/**
 * Refuses a config.json key a builder does not know, naming it: a key it cannot interpret may
 * change the model (a new attention variant, a scaling rule), and a graph that ignores it would
 * compute something else without a word.
 */
export function checkConfigKeys(config: Record<string, unknown>, configPath: string, modelType: string, reads: readonly string[]): void {
  const known = new Set([...INERT_CONFIG_KEYS, ...reads]);
  for (const key of Object.keys(config)) {
    if (!known.has(key)) {
      throw new UserError(`${configPath}: key '${key}' is not understood by pare's ${modelType} builder; remove it if it does not change the forward pass, or export the model to .onnx`);
    }
  }
}

/** A key that must hold one of `allowed` (absent or null counts as the first). */
export function expectValue(config: Record<string, unknown>, configPath: string, key: string, allowed: readonly unknown[], why: string): void {
  const v = config[key] ?? allowed[0];
  if (!allowed.includes(v)) throw new UserError(`${configPath}: ${key} ${JSON.stringify(config[key])} is not supported (${why})`);
}
