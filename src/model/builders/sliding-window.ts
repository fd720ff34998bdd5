import { attr, type GraphBuilder, LOWEST } from './graph-builder.js';

/**
 * Sliding-window attention as a mask: `mask` (the causal mask, [S, S] for the single-input graph or
 * [B, 1, S, P+S] with a KV cache) with every key `window` or more positions behind its query hidden
 * too. Query i sees key j iff j ≤ i and i − j < window, as transformers' sliding_window_overlay
 * (kv_idx > q_idx − window) and Gemma 2/3's tril(diagonal = −window) define it; i and j are places in
 * the sequence, counted over past and new tokens (attention_mask's axis). The KV cache keeps the
 * whole past and only the mask forgets it, as Optimum's Gemma 3 export does, so a cached step sees
 * exactly the keys a full run does.
 */
export function slidingWindowMask(g: GraphBuilder, mask: string, window: number, kvCache: boolean): string {
  const p = '/mask_sliding';
  const at1 = g.int64s([1], true);
  const seq = g.op('Gather', [g.op('Shape', ['input_ids'], `${p}/Shape_ids`), at1], `${p}/Gather_seq`, [attr.int('axis', 0)]);
  let rows: string;
  let cols: string;
  if (kvCache) {
    const total = g.op('Gather', [g.op('Shape', ['attention_mask'], `${p}/Shape_mask`), at1], `${p}/Gather_total`, [attr.int('axis', 0)]);
    rows = g.op('Range', [g.op('Sub', [total, seq], `${p}/Sub_past`), total, at1], `${p}/Range_rows`);
    cols = g.op('Range', [g.int64s([0], true), total, at1], `${p}/Range_cols`);
  } else {
    rows = g.op('Range', [g.int64s([0], true), seq, at1], `${p}/Range`);
    cols = rows;
  }
  const distance = g.op('Sub', [g.op('Unsqueeze', [rows, g.int64s([1])], `${p}/Unsqueeze_rows`), g.op('Unsqueeze', [cols, g.int64s([0])], `${p}/Unsqueeze_cols`)], `${p}/Sub`);
  const near = g.op('Less', [distance, g.int64s([window], true)], `${p}/Less`);
  return g.op('Where', [near, mask, g.scalar(LOWEST)], `${p}/Where`);
}
