import { UserError } from '../errors.js';
import { attrInt } from './graph.js';
import type { ModelIo } from './io.js';
import { canonicalLayerName, linears } from './linears.js';
import type { Model } from './model.js';

/**
 * config.json for a model folder: the source's, with the sizes structured passes change read back
 * from the graph, as the safetensors write-back does (llama-export.ts) but from what any ONNX form
 * keeps: the KV cache's layers, heads and head size (`io`, resolved), the projections' widths
 * (MatMul, Gemm or MatMulNBits by canonical layer name) and the logits' width. transformers.js
 * sizes the empty past it feeds from these keys, so they must match the graph. Only keys whose
 * value changed are written; for Llama/MobileLLM configs (pare's builders) every size is checked,
 * for other families a KV cache whose layer count disagrees with the config is a user error.
 */

const LLAMA_FAMILY = new Set(['llama', 'mobilellm']);
const PROJECTION = /^layers\.(\d+)\.(self_attn|mlp)\.([a-z]+_proj)$/;

export function folderConfig(model: Model, source: Record<string, unknown>, io: ModelIo, where: string): Record<string, unknown> {
  const config = { ...source };
  // quantization_config describes safetensors tensors; ONNX files carry their quantization in the graph
  delete config.quantization_config;
  const cannot = (what: string) => new UserError(`${where}: ${what}, which one config.json cannot describe; write the model as a single .onnx file`);
  const layerCount = io.kv?.layers.length;
  if (!LLAMA_FAMILY.has(String(source.model_type))) {
    const declared = source.num_hidden_layers ?? source.n_layer;
    if (layerCount !== undefined && typeof declared === 'number' && declared !== layerCount) {
      throw cannot(`the model has ${layerCount} KV-cache layers but config.json (model_type ${String(source.model_type)}) says ${declared}; pare updates sizes for llama and mobilellm configs only`);
    }
    return config;
  }

  const widths = projectionWidths(model);
  const uniform = (module: string, what: string): number | undefined => {
    const values = [...widths].filter(([k]) => k.endsWith(`.${module}`));
    const first = values[0]?.[1];
    const other = values.find(([, v]) => v !== first);
    if (other) throw cannot(`${what} differs between blocks (${values[0]![0]}: ${first}, ${other[0]}: ${other[1]})`);
    return first;
  };
  const sizes: Record<string, number | undefined> = {};
  if (io.kv) {
    sizes.num_hidden_layers = layerCount;
    const heads = new Set(io.kv.layers.map((l) => l.heads));
    const dims = new Set(io.kv.layers.map((l) => l.headDim));
    if (heads.size > 1 || dims.size > 1) throw cannot('KV heads or head sizes differ between layers');
    sizes.num_key_value_heads = [...heads][0];
    sizes.head_dim = [...dims][0];
  }
  const headDim = sizes.head_dim ?? (typeof source.head_dim === 'number' ? source.head_dim : (source.hidden_size as number) / (source.num_attention_heads as number));
  const q = uniform('self_attn.q_proj', 'the query width');
  if (q !== undefined) {
    if (q % headDim !== 0) throw cannot(`q_proj has ${q} outputs, not whole heads of ${headDim}`);
    sizes.num_attention_heads = q / headDim;
  }
  sizes.intermediate_size = uniform('mlp.gate_proj', 'the MLP width');
  sizes.vocab_size = io.outputWidth;

  // keys config.json leaves out take the values Llama implies; write a key only when that changes
  const implied: Record<string, unknown> = {
    num_key_value_heads: config.num_key_value_heads ?? config.num_attention_heads,
    head_dim: config.head_dim ?? (config.hidden_size as number) / ((sizes.num_attention_heads ?? config.num_attention_heads) as number),
  };
  for (const [key, value] of Object.entries(sizes)) {
    if (value === undefined || config[key] === value) continue;
    if (config[key] === undefined && implied[key] === value) continue;
    config[key] = value;
  }
  return config;
}

/** Output width of every block projection, by canonical layer name, whatever form it is stored in. */
function projectionWidths(model: Model): Map<string, number> {
  const widths = new Map<string, number>();
  for (const l of linears(model)) if (PROJECTION.test(l.name)) widths.set(l.name, l.outFeatures);
  for (const node of model.graph.node ?? []) {
    if (node.op_type !== 'MatMulNBits') continue;
    const name = canonicalLayerName((node.name ?? '').replace(/\/MatMulNBits$/, ''), node.input?.[1] ?? '');
    if (PROJECTION.test(name)) widths.set(name, attrInt(node, 'N', 0));
  }
  return widths;
}
