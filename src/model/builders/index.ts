import { dirname, join } from 'node:path';
import { UserError } from '../../errors.js';
import type { Model } from '../model.js';
import { openSafetensors, readConfigJson, type SafetensorsFile } from '../safetensors.js';
import type { BuildOptions } from './graph-builder.js';
import { buildGpt2 } from './gpt2.js';
import { buildLlama } from './llama.js';

export type { BuildOptions };

export type Builder = (st: SafetensorsFile, config: Record<string, unknown>, configPath: string, opts: BuildOptions) => Model;

/** What pare does with one family of safetensors checkpoints. */
export interface ModelFamily {
  /** for messages: 'Llama' */
  name: string;
  /** safetensors + config.json → ONNX graph */
  build: Builder;
  /** quantized checkpoints (config.json `quantization_config`, docs/safetensors-layout.md) are read */
  readsQuantizationConfig: boolean;
  /**
   * how a compressed graph goes back to safetensors: 'export' derives Hugging Face tensors and
   * config.json from the graph (structured pruning, quantized layers, renumbered blocks);
   * 'same-layout' writes every source tensor back under its own name, shape and order
   */
  writeBack: 'export' | 'same-layout';
  /** `domain:op_type` of nodes beyond the builder's that write-back stores (quantized and 16-bit layers) */
  writableOps: readonly string[];
}

const LLAMA: ModelFamily = {
  name: 'Llama',
  build: buildLlama,
  readsQuantizationConfig: true,
  writeBack: 'export',
  writableOps: [':DequantizeLinear', 'com.microsoft:MatMulNBits', ':Cast'],
};

const GPT2: ModelFamily = { name: 'GPT-2', build: buildGpt2, readsQuantizationConfig: false, writeBack: 'same-layout', writableOps: [] };

/** The families by config.json `model_type`: the one place that names them. */
export const FAMILIES: Readonly<Record<string, ModelFamily>> = {
  llama: LLAMA,
  mobilellm: LLAMA,
  gpt2: GPT2,
};

/** The family a config.json names, or a user error naming the file and what is supported. */
export function familyOf(config: Record<string, unknown>, configPath: string): ModelFamily {
  const type = config.model_type;
  const family = typeof type === 'string' && Object.hasOwn(FAMILIES, type) ? FAMILIES[type]! : undefined;
  if (!family) {
    throw new UserError(`${configPath}: model_type ${type === undefined ? '(missing)' : JSON.stringify(type)} has no graph builder; supported: ${Object.keys(FAMILIES).join(', ')}. Export the model to .onnx instead`);
  }
  if (!family.readsQuantizationConfig && config.quantization_config !== undefined) {
    const readers = [...new Set(Object.values(FAMILIES).filter((f) => f.readsQuantizationConfig).map((f) => f.name))].join(', ');
    throw new UserError(`${configPath}: quantization_config is read for ${readers} checkpoints only; export the ${family.name} model to .onnx instead`);
  }
  return family;
}

/**
 * safetensors + config.json beside it → the model as an ONNX graph, chosen by config.json's
 * model_type. The graph's initializers are the checkpoint's tensors by name, read lazily from the
 * file (ONNX external data into the safetensors data buffer); Model.path is the safetensors file.
 * `kvCache` builds Optimum's decoder-with-past inputs and outputs instead of input_ids → logits.
 */
export function buildFromSafetensors(path: string, opts: BuildOptions = {}): Model {
  // the header gives names, shapes and offsets; tensor bytes stay on disk until read. It is read
  // before config.json, so a corrupt file is reported as such even without its config
  const st = openSafetensors(path);
  try {
    const config = readConfigJson(path);
    const configPath = join(dirname(path), 'config.json');
    return familyOf(config, configPath).build(st, config, configPath, opts);
  } finally {
    st.close();
  }
}
