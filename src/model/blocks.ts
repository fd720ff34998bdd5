import { byteLength, elementCount } from './dtype.js';
import { GraphIndex } from './graph.js';
import { isKvCacheName, kvCacheSlot } from './io.js';
import { redirectReaders, removeNodes } from './graph-edit.js';
import { removeUnused } from './linear-weights.js';
import type { Model } from './model.js';
import { int64ToNumber, type NodeProto } from './onnx-schema.js';

/**
 * The decoder blocks of a transformer graph, found by node names (`/layers.3/...`, as PyTorch's
 * exporter and pare's builders name them; `/model/layers.3/...` and `/transformer/h.3/...` in Optimum exports), with the residual-stream tensor entering and leaving each.
 */
export interface DecoderBlock {
  index: number;
  nodes: NodeProto[];
  /** the hidden state the block reads (the previous block's output, or the embedding) */
  input: string;
  /** the hidden state it hands on */
  output: string;
}

const BLOCK_NODE = /^\/(?:model\/|transformer\/)?(?:layers|h|blocks)\.(\d+)\//;

export function decoderBlocks(model: Model): DecoderBlock[] {
  const groups = new Map<number, NodeProto[]>();
  for (const n of model.graph.node ?? []) {
    const m = BLOCK_NODE.exec(n.name ?? '');
    if (!m) continue;
    const i = Number(m[1]);
    groups.set(i, [...(groups.get(i) ?? []), n]);
  }
  const index = new GraphIndex(model.graph);
  const blocks: DecoderBlock[] = [];
  for (const [i, nodes] of [...groups].sort((a, b) => a[0] - b[0])) {
    const inside = new Set(nodes);
    const produced = new Set(nodes.flatMap((n) => n.output ?? []));
    // a block's KV cache (present.N.*) leaves as a graph output beside its hidden state
    const leaving = [...produced].filter((t) => !isKvCacheName(t) && (index.consumers.get(t) ?? []).some((c) => !inside.has(c)));
    const first = nodes.find((n) => n.op_type !== 'Constant' && (n.input ?? []).some((x) => x && !produced.has(x) && !model.hasInitializer(x)));
    const input = first?.input?.find((x) => x && !produced.has(x) && !model.hasInitializer(x));
    if (leaving.length !== 1 || !input) continue; // not a residual block this code understands
    blocks.push({ index: i, nodes, input, output: leaving[0]! });
  }
  return blocks;
}

/** Node names of an attention's output projection: Llama/Qwen/Phi/Gemma `self_attn/o_proj`, `out_proj`, GPT-2 `attn/c_proj`. */
const ATTENTION_OUTPUT = /\/(?:self_attn|attn|attention)\/(?:o_proj|out_proj|c_proj|dense)\//;

/**
 * Block index → the tensor its attention output projection writes (the o_proj output, before the
 * residual add), found by node names inside each decoder block. Whatever a pass made of o_proj
 * (MatMulNBits, SVD factors) keeps the name path, and its last node writes the tensor; a block
 * where that is not exactly one tensor is left out.
 */
export function attentionOutputs(model: Model): Map<number, string> {
  const out = new Map<number, string>();
  for (const b of decoderBlocks(model)) {
    const group = b.nodes.filter((n) => ATTENTION_OUTPUT.test(n.name ?? ''));
    const read = new Set(group.flatMap((n) => n.input ?? []));
    const ends = group.flatMap((n) => n.output ?? []).filter((t) => t && !read.has(t));
    if (ends.length === 1) out.set(b.index, ends[0]!);
  }
  return out;
}

/** The decoder block a layer name is in (`layers.3.mlp.up_proj`: 3); undefined outside the blocks (`lm_head`). */
export function layerBlockIndex(layerName: string): number | undefined {
  const m = /(?:^|\.)(?:layers|h|blocks)\.(\d+)\./.exec(layerName);
  return m ? Number(m[1]) : undefined;
}

/** The blocks holding any of `layerNames` (`layers.3.mlp.up_proj` is in block 3), in order. */
export function blocksOfLayers(model: Model, layerNames: readonly string[]): DecoderBlock[] {
  const wanted = new Set(layerNames.map(layerBlockIndex).filter((x) => x !== undefined));
  return decoderBlocks(model).filter((b) => wanted.has(b.index));
}

/** Stored bytes of the initializers in `names`. */
export function initializerBytes(model: Model, names: Iterable<string>): number {
  const set = new Set(names);
  let bytes = 0;
  for (const t of model.graph.initializer ?? []) {
    if (set.has(t.name ?? '')) bytes += byteLength(t.data_type ?? 1, elementCount((t.dims ?? []).map(int64ToNumber)));
  }
  return bytes;
}

/**
 * After blocks were removed: drop the KV-cache inputs nothing reads any more and the outputs nothing
 * produces, and renumber the remaining layers 0..n−1 in order, as a model with fewer layers names
 * its past_key_values.N / present.N (the names clients such as transformers.js build from
 * num_hidden_layers). Returns the layer indices dropped and the renumbering.
 */
export function compactKvCache(model: Model): { dropped: number[]; renumbered: [number, number][] } {
  const graph = model.graph;
  const read = new Set((graph.node ?? []).flatMap((n) => n.input ?? []));
  const produced = new Set((graph.node ?? []).flatMap((n) => n.output ?? []));
  const layers = new Map<number, { live: boolean }>();
  const cacheValues = [...(graph.input ?? []).map((v) => ({ v, live: read.has(v.name ?? '') })), ...(graph.output ?? []).map((v) => ({ v, live: produced.has(v.name ?? '') }))];
  for (const { v, live } of cacheValues) {
    const slot = kvCacheSlot(v.name ?? '');
    if (!slot) continue;
    const l = layers.get(slot.index) ?? { live: false };
    l.live ||= live;
    layers.set(slot.index, l);
  }
  const dropped = [...layers].filter(([, l]) => !l.live).map(([i]) => i).sort((a, b) => a - b);
  const kept = [...layers].filter(([, l]) => l.live).map(([i]) => i).sort((a, b) => a - b);
  if (dropped.length === 0) return { dropped, renumbered: [] };
  const isDropped = (name: string) => dropped.includes(kvCacheSlot(name)?.index ?? -1);
  graph.input = (graph.input ?? []).filter((v) => !isDropped(v.name ?? ''));
  graph.output = (graph.output ?? []).filter((v) => !isDropped(v.name ?? ''));
  const renumbered = kept.map((old, j) => [old, j] as [number, number]).filter(([old, j]) => old !== j);
  const newIndex = new Map(renumbered);
  // one simultaneous rename, so `.3.` → `.2.` never collides with the old `.2.`
  const rename = (name: string) => {
    const slot = kvCacheSlot(name);
    return slot && newIndex.has(slot.index) ? slot.at(newIndex.get(slot.index)!) : name;
  };
  for (const n of graph.node ?? []) {
    n.input = (n.input ?? []).map(rename);
    n.output = (n.output ?? []).map(rename);
  }
  for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.value_info ?? [])]) v.name = rename(v.name ?? '');
  return { dropped, renumbered };
}

/** Drop a block: whatever read its output reads its input instead (the residual stream skips it). */
export function removeBlock(model: Model, block: DecoderBlock): void {
  const inside = new Set(block.nodes);
  removeNodes(model.graph, (n) => inside.has(n));
  redirectReaders(model.graph, block.output, block.input);
  removeUnused(model);
}
