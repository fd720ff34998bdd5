import { DataType } from '../dtype.js';
import type { ValueInfoProto } from '../onnx-schema.js';
import { attr, type GraphBuilder, LOWEST, tensorType } from './graph-builder.js';

/** Optimum's dim names for a decoder with past: the inputs' and the outputs' sequence axes. */
const BATCH = 'batch_size';
const SEQUENCE = 'sequence_length';
const PAST = 'past_sequence_length';
const TOTAL = 'past_sequence_length + sequence_length';

/**
 * The KV-cache half of a decoder graph in Hugging Face Optimum's layout: `attention_mask` [batch,
 * past + sequence], `position_ids` [batch, sequence] and `past_key_values.{i}.key/value` [batch,
 * kv_heads, past, head_dim] in; `present.{i}.key/value` [batch, kv_heads, past + sequence, head_dim]
 * out after the logits. The builders call it where the plain graph has its Range positions, its
 * causal mask and its per-layer keys/values, so every other node stays as it is.
 */
export class KvCache {
  /** int64 [batch, sequence]: the absolute position of each new token */
  readonly positions = 'position_ids';

  constructor(
    private readonly g: GraphBuilder,
    private readonly shape: { layers: number; heads: number; headDim: number },
  ) {}

  /**
   * The additive mask [B, 1, S, P+S] for this step's queries over past and new keys: query t sits at
   * absolute position P+t and sees key j iff j ≤ P+t and attention_mask[b, j] ≠ 0, else float32 lowest.
   * P is the mask's length minus the sequence length.
   */
  mask(): string {
    const g = this.g;
    const at1 = g.int64s([1], true);
    const total = g.op('Gather', [g.op('Shape', ['attention_mask'], '/mask/Shape_mask'), at1], '/mask/Gather_total', [attr.int('axis', 0)]);
    const seq = g.op('Gather', [g.op('Shape', ['input_ids'], '/mask/Shape_ids'), at1], '/mask/Gather_seq', [attr.int('axis', 0)]);
    const past = g.op('Sub', [total, seq], '/mask/Sub_past');
    const rows = g.op('Range', [past, total, at1], '/mask/Range_rows');
    const cols = g.op('Range', [g.int64s([0], true), total, at1], '/mask/Range_cols');
    const future = g.op('Less', [g.op('Unsqueeze', [rows, g.int64s([1])], '/mask/Unsqueeze_rows'), g.op('Unsqueeze', [cols, g.int64s([0])], '/mask/Unsqueeze_cols')], '/mask/Less');
    const padding = g.op('Unsqueeze', [g.op('Equal', ['attention_mask', g.int64s([0], true)], '/mask/Equal_padding'), g.int64s([1, 2])], '/mask/Unsqueeze_padding');
    const hidden = g.op('Or', [future, padding], '/mask/Or');
    return g.op('Where', [hidden, g.scalar(LOWEST), g.scalar(0)], '/mask/Where');
  }

  /**
   * This step's keys and values [B, kv_heads, S, hd] after the past ones: Concat(past, new) along the
   * sequence axis, [B, kv_heads, P+S, hd], which is also the layer's present output. The past stays a
   * direct Concat input (runtime/kv-shapes.ts reads the true cache shape from the other operand).
   */
  append(layer: number, key: string, value: string, path: string): [string, string] {
    const g = this.g;
    const keys = g.op('Concat', [`past_key_values.${layer}.key`, key], `${path}/key_cache/Concat`, [attr.int('axis', 2)]);
    const values = g.op('Concat', [`past_key_values.${layer}.value`, value], `${path}/value_cache/Concat`, [attr.int('axis', 2)]);
    g.node('Identity', [keys], [`present.${layer}.key`], `${path}/key_cache/Identity`);
    g.node('Identity', [values], [`present.${layer}.value`], `${path}/value_cache/Identity`);
    return [keys, values];
  }

  /** The graph's declared inputs and outputs, logits first. */
  io(vocab: number): { inputs: ValueInfoProto[]; outputs: ValueInfoProto[] } {
    const { layers, heads, headDim } = this.shape;
    const cache = (side: 'past_key_values' | 'present', length: string) =>
      Array.from({ length: layers }, (_, i) =>
        (['key', 'value'] as const).map((kv) => ({ name: `${side}.${i}.${kv}`, type: tensorType(DataType.FLOAT, [BATCH, heads, length, headDim]) })),
      ).flat();
    return {
      inputs: [
        { name: 'input_ids', type: tensorType(DataType.INT64, [BATCH, SEQUENCE]) },
        { name: 'attention_mask', type: tensorType(DataType.INT64, [BATCH, TOTAL]) },
        { name: 'position_ids', type: tensorType(DataType.INT64, [BATCH, SEQUENCE]) },
        ...cache('past_key_values', PAST),
      ],
      outputs: [{ name: 'logits', type: tensorType(DataType.FLOAT, [BATCH, SEQUENCE, vocab]) }, ...cache('present', TOTAL)],
    };
  }
}
