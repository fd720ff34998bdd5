import { dirname, join } from 'node:path';
import { UserError } from '../../errors.js';
import type { BlockLayout } from '../llama-export.js';
import type { Model } from '../model.js';
import { openSafetensors, readConfigJson, type SafetensorsFile } from '../safetensors.js';
import type { BuildOptions } from './graph-builder.js';
import { buildGpt2, GPT2_CONFIG_KEYS } from './gpt2.js';
import { buildLlama } from './llama.js';
import { GENERIC_CONFIG_KEYS, LLAMA as LLAMA_VARIANT } from './llama-config.js';
import { buildQwen2, QWEN2 } from './qwen2.js';
import { buildQwen3, QWEN3 } from './qwen3.js';
import { buildGemma3, GEMMA3_BLOCKS } from './gemma3.js';
import { buildPhi3, PHI3_BLOCKS } from './phi3.js';

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
  /** config.json keys the builder reads or knows not to matter, beyond GENERIC_CONFIG_KEYS; others are listed by `pare inspect` */
  configKeys?: readonly string[];
  /** 'export': the block's projections and the sizes they give (default Llama's) */
  blocks?: BlockLayout;
}

/** Llama-architecture families write back through llama-export.ts, quantized layers included. */
const EXPORTED = { readsQuantizationConfig: true, writeBack: 'export', writableOps: [':DequantizeLinear', 'com.microsoft:MatMulNBits', ':Cast'] } as const;

const LLAMA: ModelFamily = { name: 'Llama', build: buildLlama, ...EXPORTED, configKeys: LLAMA_VARIANT.configKeys };
const QWEN2_FAMILY: ModelFamily = { name: 'Qwen2', build: buildQwen2, ...EXPORTED, configKeys: QWEN2.configKeys };
const QWEN3_FAMILY: ModelFamily = { name: 'Qwen3', build: buildQwen3, ...EXPORTED, configKeys: QWEN3.configKeys };

const GPT2: ModelFamily = { name: 'GPT-2', build: buildGpt2, readsQuantizationConfig: false, writeBack: 'same-layout', writableOps: [], configKeys: GPT2_CONFIG_KEYS };

/** Phi-3 and Gemma 3 write back as Llama does, with their own tensor names (fused qkv_proj/gate_up_proj; four norms and q/k norms). */
// their builders refuse config keys they do not know (config-keys.ts), so inspect has none to list
const PHI3: ModelFamily = { name: 'Phi-3', build: buildPhi3, ...EXPORTED, blocks: PHI3_BLOCKS };
const GEMMA3: ModelFamily = { name: 'Gemma 3', build: buildGemma3, ...EXPORTED, blocks: GEMMA3_BLOCKS };

/** The families by config.json `model_type`: the one place that names them. */
export const FAMILIES: Readonly<Record<string, ModelFamily>> = {
  llama: LLAMA,
  mobilellm: LLAMA,
  qwen2: QWEN2_FAMILY,
  qwen3: QWEN3_FAMILY,
  gpt2: GPT2,
  phi3: PHI3,
  gemma3_text: GEMMA3,
};

/**
 * config.json keys pare does not understand: for a known model_type those its family neither reads
 * nor knows to be irrelevant; for an unknown one, those no family knows.
 */
export function unknownConfigKeys(config: Record<string, unknown>): string[] {
  const type = config.model_type;
  const family = typeof type === 'string' && Object.hasOwn(FAMILIES, type) ? FAMILIES[type]! : undefined;
  if (family && !family.configKeys) return [];
  const known = new Set([...GENERIC_CONFIG_KEYS, ...(family ? family.configKeys! : Object.values(FAMILIES).flatMap((f) => f.configKeys ?? []))]);
  return Object.keys(config).filter((k) => !known.has(k));
}

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
 * By default the graph has Optimum's decoder-with-past inputs and outputs; `kvCache: false` builds
 * the single-input graph input_ids → logits.
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
