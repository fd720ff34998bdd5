import { z } from 'zod';
import { UserError } from '../errors.js';
import { attr, makeNode } from '../model/graph.js';
import { insertBefore } from '../model/graph-edit.js';
import { readWeight, removeUnused } from '../model/linear-weights.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { toFloat32 } from '../model/pack.js';
import { relativeError } from '../obs/output-error.js';
import { definePass } from '../pass/pass.js';

/**
 * Embedding sharing (MobileLLM): the output projection reads the input embedding table instead of
 * its own copy, lm_head(x) = x·Eᵀ with E [vocab, hidden] the table the token Gather reads, so the
 * file loses vocab × hidden weights. Exporters often store a tied lm_head twice; then nothing
 * changes but the size. For an untied head the report gives the relative change ‖W − Eᵀ‖/‖W‖;
 * distillation afterwards recovers the difference.
 */

const ShareEmbeddingParams = z.strictObject({
  max_relative_change: z.number().min(0).default(1).describe('refuse to tie when ‖W_lm_head − E‖/‖W_lm_head‖ exceeds this (1 allows any)'),
});

/** The token embedding: a Gather reading a 2-D initializer with the model's integer input. */
function embeddingTable(model: Model): string | undefined {
  const inputs = new Set((model.graph.input ?? []).map((v) => v.name));
  const g = (model.graph.node ?? []).find((n) => n.op_type === 'Gather' && model.hasInitializer(n.input![0]!) && inputs.has(n.input![1]) && model.tensor(n.input![0]!).dims.length === 2);
  return g?.input![0];
}

export const shareEmbeddings = definePass({
  id: 'share.embeddings',
  summary: 'tie the output projection to the input embedding table (MobileLLM embedding sharing); the file loses the head\'s copy',
  params: ShareEmbeddingParams,
  needsCalibration: () => ({ need: 'none' }),
  eligible: (layer) => layer.kind === 'matmul',
  async apply(model, params, ctx) {
    const table = embeddingTable(model);
    if (!table) throw new UserError(`share.embeddings: ${model.path} has no token embedding (a Gather of a 2-D initializer by the model input)`);
    const t = model.tensor(table);
    const [vocab, hidden] = t.dims as [number, number];
    const heads = ctx.layers.filter((l: LinearLayer) => l.outFeatures === vocab && l.inFeatures === hidden && l.weight !== table);
    if (heads.length === 0) throw new UserError(`share.embeddings: ${ctx.where}.targets select no ${hidden}→${vocab} projection with its own weight (already tied?)`);
    const E = toFloat32(t.dataType, t.data, vocab * hidden); // [vocab, hidden] = the head's [out, in]
    const stats = [];
    for (const [j, head] of heads.entries()) {
      ctx.progress.layer(j, heads.length, head.name);
      const t0 = performance.now();
      const W = readWeight(model, head);
      const change = relativeError(W, E);
      if (change > params.max_relative_change) {
        throw new UserError(`share.embeddings: '${head.name}' differs from the embedding by ${change.toFixed(3)} (relative), above ${ctx.where}.params.max_relative_change ${params.max_relative_change}`);
      }
      // MatMul(x, W_head) -> MatMul(x, Transpose(E))
      const transposed = `${head.name}.tied_embedding`;
      insertBefore(model.graph, head.node, [makeNode('Transpose', [table], [transposed], `${head.node.name ?? head.name}/tied_Transpose`, [attr.ints('perm', [1, 0])])]);
      head.node.input![1] = transposed;
      removeUnused(model);
      stats.push({ name: head.name, kind: head.kind, shape: [vocab, hidden], ms: performance.now() - t0, bytes_before: W.length * 4, bytes_after: 0, objective: change, extra: { tied_to: table } });
    }
    return { layers: stats, warnings: [] };
  },
});

