import { DataType } from './dtype.js';
import { GraphIndex } from './graph.js';
import { readWeight } from './linear-weights.js';
import { linears, type LinearLayer } from './linears.js';
import type { Model } from './model.js';
import { int64ToNumber, type NodeProto } from './onnx-schema.js';
import { fromFloat32 } from './pack.js';
import { quantizationConfig, quantizedFromGraph, quantizedTensors, type QuantizedWeight, type QuantScheme } from './quantized-safetensors.js';
import type { SafetensorsEntry, SafetensorsTensor } from './safetensors.js';

/**
 * A Llama-architecture graph (as buildLlamaFamily names it: Llama, Qwen2's q/k/v biases, Qwen3's
 * q/k norms; after any passes) → Hugging Face tensors and config.json.
 * Sizes come from the tensors themselves: the surviving blocks (by node name `/layers.N/`) are
 * renumbered 0..n−1, intermediate_size is the MLP width, heads are q_proj rows / head_dim.
 * Structure one config.json cannot describe (widths that differ between blocks, blocks that share
 * weights) throws `cannot(...)`. Families built the same way with other projections or norms (Phi-3's
 * fused qkv_proj and gate_up_proj, Gemma 3's four norms per block, q_norm/k_norm and (1 + w) weights)
 * pass their BlockLayout.
 */

const PROJ = /^\/(?:layers\.(\d+)\/(self_attn|mlp)\/([a-z_]+_proj)|(lm_head))\/MatMul(?:\/MatMulNBits)?$/;
/** an RMSNorm's final Mul by its weight: `/layers.3/post_attention_layernorm/Mul_1`, `/layers.3/self_attn/q_norm/Mul_1`, `/norm/Mul_1` */
const NORM = /^\/(?:layers\.(\d+)\/((?:self_attn\/)?[a-z_]*norm)|(norm))\/Mul_1$/;

/** a projection's bias (Qwen2's q/k/v), the Add after its MatMul */
const BIAS = /^\/layers\.(\d+)\/self_attn\/([qkv]_proj)\/Add$/;

/** A family's decoder block as config.json describes it: which projections, and the sizes they give. */
export interface BlockLayout {
  /** for messages: 'Llama' */
  name: string;
  /** every block's projections, as module names under `model.layers.N.` */
  projections: readonly string[];
  /** head_dim as the family reads config.json */
  headDim(config: Record<string, unknown>): number;
  /** widths from a block's projection shapes [out, in], or what does not fit together */
  widths(shape: (projection: string) => [number, number], hidden: number, headDim: number): { ffn: number; heads: number; kv: number } | string;
  /** config.json keys that follow the surviving blocks (`kept`: their source indices, in order) */
  blockConfig?(config: Record<string, unknown>, kept: readonly number[]): Record<string, unknown>;
}

export const LLAMA_BLOCKS: BlockLayout = {
  name: 'Llama',
  projections: ['mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj', 'self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj'],
  headDim: (c) => (typeof c.head_dim === 'number' ? c.head_dim : (c.hidden_size as number) / (c.num_attention_heads as number)),
  widths(m, hidden, headDim) {
    const [gate, up, down, q, k, v, o] = LLAMA_BLOCKS.projections.map(m) as [number, number][];
    if (gate![0] !== up![0] || up![0] !== down![1] || k![0] !== v![0] || q![0] !== o![1] || [gate![1], up![1], down![0], q![1], k![1], v![1], o![0]].some((d) => d !== hidden)) {
      return `projections do not fit together (q ${q}, k ${k}, v ${v}, o ${o}, gate ${gate}, up ${up}, down ${down})`;
    }
    if (q![0] % headDim !== 0 || k![0] % headDim !== 0) return `q_proj rows ${q![0]} / k_proj rows ${k![0]} are not whole heads of head_dim ${headDim}`;
    return { ffn: gate![0], heads: q![0] / headDim, kv: k![0] / headDim };
  },
};

interface Projection {
  node: NodeProto;
  layer?: LinearLayer;
  /** HF module name in the source numbering */
  module: string;
  block?: number;
}

export interface LlamaExport {
  /** with the source tensor each one stands for (in the source's numbering), for the output order */
  tensors: (SafetensorsTensor & { origin: string })[];
  config: Record<string, unknown>;
  /** source tensor names the export accounts for (written, renamed or dropped with their block) */
  used: Set<string>;
  /** source block index → its index in the output */
  blocks: ReadonlyMap<number, number>;
}

export function exportLlama(
  model: Model,
  source: { config: Record<string, unknown>; tensors: ReadonlyMap<string, SafetensorsEntry> },
  cannot: (what: string) => Error,
  layout: BlockLayout = LLAMA_BLOCKS,
): LlamaExport {
  const index = new GraphIndex(model.graph);
  const byNode = new Map(linears(model).map((l) => [l.node, l]));
  const used = new Set<string>();
  const tensors: LlamaExport['tensors'] = [];
  const schemes = new Map<string, QuantScheme>();

  // the initializer behind a node input, through the Add of a (1 + w) norm weight and a Cast the builder adds for 16-bit tensors
  const initializerOf = (value: string, expected: string): string => {
    let p = index.producer.get(value);
    if (p?.op_type === 'Add' && isScalar(model, p.input![1]!, 1)) p = index.producer.get((value = p.input![0]!));
    const name = p?.op_type === 'Cast' ? p.input![0]! : value;
    if (!model.hasInitializer(name)) throw cannot(`tensor '${expected}' was removed by a pass`);
    return name;
  };
  // tensor bytes are read (or computed) when the writer reaches them, one at a time
  const plain = (init: string, newName: string, origin: string) => {
    const t = model.initializer(init)!;
    const dims = (t.dims ?? []).map(int64ToNumber);
    used.add(init);
    tensors.push({ name: newName, dataType: t.data_type ?? 0, shape: dims, data: () => model.tensor(t).data, origin });
    return dims;
  };
  // a quantized module's tensors are written one after another: keep the last module's codes for its next tensor
  let lastQuantized: { node: NodeProto; q: QuantizedWeight } | undefined;
  const quantizedOf = (p: Projection): QuantizedWeight => {
    if (lastQuantized?.node !== p.node) lastQuantized = { node: p.node, q: quantizedFromGraph(model, p.node, p.layer, cannot)! };
    return lastQuantized.q;
  };

  // projections and norms, grouped by the block their node names give
  const projections: Projection[] = [];
  const norms: { node: NodeProto; module: string; block?: number }[] = [];
  const biases: { node: NodeProto; module: string; block: number }[] = [];
  for (const node of model.graph.node ?? []) {
    const name = node.name ?? '';
    const p = PROJ.exec(name);
    if (p && (node.op_type === 'MatMul' || node.op_type === 'MatMulNBits')) {
      const block = p[1] === undefined ? undefined : Number(p[1]);
      projections.push({ node, layer: byNode.get(node), block, module: block === undefined ? 'lm_head' : `model.layers.${block}.${p[2]}.${p[3]}` });
      continue;
    }
    const n = NORM.exec(name);
    const b = BIAS.exec(name);
    if (n) norms.push({ node, block: n[1] === undefined ? undefined : Number(n[1]), module: n[1] === undefined ? 'model.norm' : `model.layers.${n[1]}.${n[2]!.replace('/', '.')}` });
    else if (b) biases.push({ node, block: Number(b[1]), module: `model.layers.${b[1]}.self_attn.${b[2]}` });
    else if (node.op_type === 'MatMulNBits' || (node.op_type === 'MatMul' && !/^\/layers\.\d+\/self_attn\/MatMul(_1)?$/.test(name))) {
      throw cannot(`node '${name}' is a ${node.domain ? `${node.domain}.` : ''}${node.op_type} that is no Llama projection (factored or rewritten layer)`);
    }
  }
  const blocks = [...new Set(projections.flatMap((p) => (p.block === undefined ? [] : [p.block])))].sort((a, b) => a - b);
  const renumber = new Map(blocks.map((b, i) => [b, i]));
  const rename = (module: string, block: number | undefined) => (block === undefined ? module : module.replace(`model.layers.${block}.`, `model.layers.${renumber.get(block)}.`));
  // a block whose weights another block reads (share.layers) has no module of its own in HF Llama
  const owner = new Map<string, number | undefined>();
  const claim = (init: string, block: number | undefined) => {
    if (owner.has(init) && owner.get(init) !== block) {
      throw cannot(`blocks ${owner.get(init)} and ${block} read the same tensor '${init}' (share.layers); Hugging Face Llama has no shared blocks`);
    }
    owner.set(init, block);
  };

  const embedNode = (model.graph.node ?? []).find((n) => n.name === '/embed_tokens/Gather');
  if (!embedNode) throw cannot('the embedding lookup /embed_tokens/Gather is gone');
  const embed = initializerOf(embedNode.input![0]!, 'model.embed_tokens.weight');
  const [vocab, hidden] = plain(embed, 'model.embed_tokens.weight', 'model.embed_tokens.weight') as [number, number];

  for (const n of norms) {
    const init = initializerOf(n.node.input![1]!, `${n.module}.weight`);
    claim(init, n.block);
    plain(init, `${rename(n.module, n.block)}.weight`, `${n.module}.weight`);
  }
  for (const b of biases) {
    const init = initializerOf(b.node.input![1]!, `${b.module}.bias`);
    claim(init, b.block);
    plain(init, `${rename(b.module, b.block)}.bias`, `${b.module}.bias`);
  }

  const shapes = new Map<string, [number, number]>();
  let tied = false;
  for (const p of projections) {
    const q = quantizedFromGraph(model, p.node, p.layer, cannot);
    const module = rename(p.module, p.block);
    if (q) {
      for (const x of (p.node.op_type === 'MatMulNBits' ? p.node.input!.slice(1) : [p.layer!.weight, ...p.layer!.weightChain.flatMap((c) => c.input!.slice(1))]).filter(Boolean)) {
        claim(x, p.block);
        used.add(x);
      }
      // q gave the scheme and shapes; the codes are computed again when written
      tensors.push(...quantizedTensors(module, q).map((t, k) => ({ ...t, data: () => quantizedTensors(module, quantizedOf(p))[k]!.data, origin: `${p.module}.weight` })));
      schemes.set(module, q.scheme);
      shapes.set(p.module, [q.rows, q.cols]);
      continue;
    }
    if (!p.layer) throw cannot(`layer '${p.module}' has no constant weight`);
    if (p.module === 'lm_head' && p.layer.weight === embed) {
      tied = true;
      continue;
    }
    claim(p.layer.weight, p.block);
    used.add(p.layer.weight);
    const stored = model.initializer(p.layer.weight)!.data_type;
    const layer = p.layer;
    const dataType = stored === DataType.FLOAT16 || stored === DataType.BFLOAT16 ? stored : DataType.FLOAT;
    tensors.push({ name: `${module}.weight`, dataType, shape: [layer.outFeatures, layer.inFeatures], data: () => fromFloat32(dataType, readWeight(model, layer)), origin: `${p.module}.weight` });
    shapes.set(p.module, [p.layer.outFeatures, p.layer.inFeatures]);
  }

  const config = { ...source.config };
  const c = source.config;
  // what the builder assumes for keys config.json leaves out; unchanged values stay left out
  const implied: Record<string, unknown> = { num_key_value_heads: c.num_attention_heads, tie_word_embeddings: !source.tensors.has('lm_head.weight') };
  for (const [k, v] of Object.entries({ ...blockSizes(blocks, shapes, hidden, source, layout, cannot), vocab_size: vocab, tie_word_embeddings: tied })) {
    if (config[k] !== v && !(config[k] === undefined && implied[k] === v)) config[k] = v;
  }
  for (const [k, v] of Object.entries(layout.blockConfig?.(c, blocks) ?? {})) {
    if (v === undefined) delete config[k];
    else config[k] = v;
  }
  if (schemes.size) config.quantization_config = quantizationConfig(schemes);
  else delete config.quantization_config;
  return { tensors, config, used, blocks: renumber };
}

/** num_hidden_layers, intermediate_size and heads from the projection shapes, uniform across blocks. */
function blockSizes(
  blocks: number[],
  shapes: ReadonlyMap<string, [number, number]>,
  hidden: number,
  source: { config: Record<string, unknown>; tensors: ReadonlyMap<string, SafetensorsEntry> },
  layout: BlockLayout,
  cannot: (what: string) => Error,
): Record<string, number> {
  const c = source.config;
  const headDim = layout.headDim(c);
  const widths = new Map<number, { ffn: number; heads: number; kv: number }>();
  for (const b of blocks) {
    const m = (x: string) => {
      const s = shapes.get(`model.layers.${b}.${x}`);
      if (!s) throw cannot(`tensor 'model.layers.${b}.${x}.weight' was removed by a pass`);
      return s;
    };
    const w = layout.widths(m, hidden, headDim);
    if (typeof w === 'string') {
      // within a block the projections must agree; name one that changed from the source
      for (const x of layout.projections) {
        const [was, now] = [source.tensors.get(`model.layers.${b}.${x}.weight`)?.shape, m(x)];
        if (was && (was[0] !== now[0] || was[1] !== now[1])) {
          throw cannot(`tensor 'model.layers.${b}.${x}.weight' changed shape from [${was.join(', ')}] to [${now.join(', ')}] (structured pruning) without the rest of its block`);
        }
      }
      throw cannot(`block ${b}: ${w}`);
    }
    widths.set(b, w);
  }
  const first = widths.get(blocks[0]!);
  if (!first) throw cannot('no decoder block is left');
  for (const [b, w] of widths) {
    if (w.ffn !== first.ffn) throw cannot(`MLP widths differ between blocks (layers.${blocks[0]}: ${first.ffn}, layers.${b}: ${w.ffn}); Hugging Face ${layout.name} has one intermediate_size`);
    if (w.heads !== first.heads || w.kv !== first.kv) {
      throw cannot(`attention heads differ between blocks (layers.${blocks[0]}: ${first.heads}/${first.kv}, layers.${b}: ${w.heads}/${w.kv} query/KV heads); Hugging Face ${layout.name} has one num_attention_heads`);
    }
  }
  if (first.heads % first.kv !== 0) throw cannot(`${first.heads} query heads are not a multiple of ${first.kv} KV heads`);
  const sizes: Record<string, number> = { num_hidden_layers: blocks.length, intermediate_size: first.ffn, num_attention_heads: first.heads, num_key_value_heads: first.kv };
  // HF Llama reads head_dim from config.json when set; write it once heads no longer divide hidden_size
  if (typeof c.head_dim === 'number' || first.heads * headDim !== hidden) sizes.head_dim = headDim;
  return sizes;
}

/** `name` is a one-element constant equal to `value` (the 1 of a (1 + w) norm weight). */
function isScalar(model: Model, name: string, value: number): boolean {
  if (!model.hasInitializer(name)) return false;
  const t = model.tensor(name);
  return t.dataType === DataType.FLOAT && t.data.byteLength === 4 && new DataView(t.data.buffer, t.data.byteOffset, 4).getFloat32(0, true) === value;
}
