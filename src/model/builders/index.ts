import { dirname, join } from 'node:path';
import { UserError } from '../../errors.js';
import type { Model } from '../model.js';
import { openSafetensors, readConfigJson, type SafetensorsFile } from '../safetensors.js';
import type { BuildOptions } from './graph-builder.js';
import { buildGpt2 } from './gpt2.js';
import { buildLlama } from './llama.js';

export type { BuildOptions };

type Builder = (st: SafetensorsFile, config: Record<string, unknown>, configPath: string, opts: BuildOptions) => Model;

/** Graph builders by config.json `model_type`. */
export const BUILDERS: Readonly<Record<string, Builder>> = {
  llama: buildLlama,
  mobilellm: buildLlama,
  gpt2: buildGpt2,
};

/**
 * safetensors + config.json beside it → the model as an ONNX graph, chosen by config.json's
 * model_type. The graph's initializers are the checkpoint's tensors by name, read lazily from the
 * file (ONNX external data into the safetensors data buffer); Model.path is the safetensors file.
 * `kvCache` builds Optimum's decoder-with-past inputs and outputs instead of input_ids → logits.
 */
export function buildFromSafetensors(path: string, opts: BuildOptions = {}): Model {
  const config = readConfigJson(path);
  const configPath = join(dirname(path), 'config.json');
  const type = config.model_type;
  const build = typeof type === 'string' && Object.hasOwn(BUILDERS, type) ? BUILDERS[type]! : undefined;
  if (!build) {
    throw new UserError(`${configPath}: model_type ${type === undefined ? '(missing)' : JSON.stringify(type)} has no graph builder; supported: ${Object.keys(BUILDERS).join(', ')}. Export the model to .onnx instead`);
  }
  if (type === 'gpt2' && config.quantization_config !== undefined) throw new UserError(`${configPath}: quantization_config is read for Llama checkpoints only; export the GPT-2 model to .onnx instead`);
  // the header gives names, shapes and offsets; tensor bytes stay on disk until read
  const st = openSafetensors(path);
  try {
    return build(st, config, configPath, opts);
  } finally {
    st.close();
  }
}
