import { join, dirname } from 'node:path';
import { UserError } from '../../errors.js';
import type { Model } from '../model.js';
import { openSafetensors, readConfigJson } from '../safetensors.js';
import { buildLlama, type LlamaConfig } from './llama.js';

/** safetensors + config.json beside it → the model as an ONNX graph, by config.json's model_type. */
export function buildFromSafetensors(path: string): Model {
  const config = readConfigJson(path);
  const configPath = join(dirname(path), 'config.json');
  const type = String(config.model_type ?? '');
  const st = openSafetensors(path);
  try {
    if (type === 'llama' || type === 'mobilellm') return buildLlama(st, config as unknown as LlamaConfig, configPath);
  } finally {
    st.close();
  }
  throw new UserError(`${configPath}: model_type '${type || '(missing)'}' has no graph builder; supported: llama, mobilellm`);
}
