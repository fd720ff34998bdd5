/**
 * src/share — a pass family (layer 11): weight sharing between layers and with the embedding.
 */
import { z } from 'zod';
import { UserError } from '../errors.js';
import { blocksOfLayers, initializerBytes, type DecoderBlock } from '../model/blocks.js';
import { removeUnused } from '../model/linear-weights.js';
import type { Model } from '../model/model.js';
import { int64ToNumber } from '../model/onnx-schema.js';
import { captureSession } from '../runtime/ort.js';
import { definePass, type LayerStat } from '../pass/pass.js';

/**
 * Immediate block-wise weight sharing (MobileLLM-LS, Liu et al. 2024): in a chosen pair of adjacent
 * blocks the second reads the first one's weights, so the block runs twice with one set of
 * parameters and the file loses a block. Pairs are chosen by the smallest change of the model output
 * on calibration data (relative L2 of the first graph output). Both blocks must have the same
 * structure (the same ops in the same order), which decoder blocks of one model do.
 */

const ShareLayersParams = z.strictObject({
  pairs: z.number().int().min(1).default(1).describe('number of adjacent block pairs that share weights'),
});

/** Input rewrites that make `second` read `first`'s initializers: [node, input index, new name]. */
function sharingEdits(model: Model, first: DecoderBlock, second: DecoderBlock): [DecoderBlock['nodes'][number], number, string][] | undefined {
  if (first.nodes.length !== second.nodes.length) return undefined;
  const edits: [DecoderBlock['nodes'][number], number, string][] = [];
  for (let k = 0; k < first.nodes.length; k++) {
    const a = first.nodes[k]!;
    const b = second.nodes[k]!;
    if (a.op_type !== b.op_type || (a.input?.length ?? 0) !== (b.input?.length ?? 0)) return undefined;
    for (let i = 0; i < (b.input?.length ?? 0); i++) {
      const wa = a.input![i]!;
      const wb = b.input![i]!;
      if (!model.hasInitializer(wb) || wa === wb) continue;
      if (!model.hasInitializer(wa)) return undefined;
      const ta = model.graph.initializer!.find((t) => t.name === wa)!;
      const tb = model.graph.initializer!.find((t) => t.name === wb)!;
      if (JSON.stringify((ta.dims ?? []).map(int64ToNumber)) !== JSON.stringify((tb.dims ?? []).map(int64ToNumber)) || ta.data_type !== tb.data_type) return undefined;
      edits.push([b, i, wa]);
    }
  }
  return edits;
}

function apply(edits: [DecoderBlock['nodes'][number], number, string][]): string[] {
  return edits.map(([node, i, name]) => {
    const old = node.input![i]!;
    node.input![i] = name;
    return old;
  });
}

export const shareLayers = definePass({
  id: 'share.layers',
  summary: 'MobileLLM-LS block-wise weight sharing: adjacent block pairs with the smallest output change on calibration data run one set of weights twice',
  params: ShareLayersParams,
  needsCalibration: () => ({ need: 'required' }),
  changesLayers: true,
  async apply(model, params, ctx) {
    const blocks = blocksOfLayers(model, ctx.layers.map((l) => l.name));
    const candidates = blocks.slice(0, -1).map((b, i) => [b, blocks[i + 1]!] as const).filter(([a, b]) => b.index === a.index + 1 && sharingEdits(model, a, b));
    if (candidates.length < params.pairs) throw new UserError(`share.layers: ${ctx.where}.targets give ${candidates.length} adjacent block pairs of equal structure, fewer than params.pairs ${params.pairs}`);
    const output = model.graph.output![0]!.name!;
    const runOutputs = async (): Promise<Float32Array[]> => {
      const s = await captureSession(model, [output], { threads: ctx.calibration!.threads });
      const outs: Float32Array[] = [];
      for (const feed of ctx.calibration!.feedsFor(model)) outs.push((await s.run(feed, [output]))[output]!.data as Float32Array);
      await s.release();
      return outs;
    };
    const t0 = performance.now();
    const reference = await runOutputs();
    const scored: { pair: (typeof candidates)[number]; change: number }[] = [];
    for (const [j, pair] of candidates.entries()) {
      ctx.progress.layer(j, candidates.length, `layers.${pair[0].index}+${pair[1].index}`);
      const edits = sharingEdits(model, pair[0], pair[1])!;
      const old = apply(edits);
      const outs = await runOutputs();
      edits.forEach(([node, i], k) => (node.input![i] = old[k]!)); // undo
      let num = 0;
      let den = 0;
      outs.forEach((o, s) => o.forEach((v, i) => ([num, den] = [num + (v - reference[s]![i]!) ** 2, den + reference[s]![i]! ** 2])));
      scored.push({ pair, change: Math.sqrt(num / den) });
    }
    // the lowest-change pairs that do not overlap
    const chosen: typeof scored = [];
    const used = new Set<number>();
    for (const c of [...scored].sort((a, b) => a.change - b.change)) {
      if (chosen.length === params.pairs) break;
      if (used.has(c.pair[0].index) || used.has(c.pair[1].index)) continue;
      chosen.push(c);
      used.add(c.pair[0].index).add(c.pair[1].index);
    }
    const stats: LayerStat[] = [];
    for (const { pair, change } of chosen) {
      const edits = sharingEdits(model, pair[0], pair[1])!;
      const bytes = initializerBytes(model, edits.map(([node, i]) => node.input![i]!));
      apply(edits);
      stats.push({ name: `layers.${pair[1].index}`, kind: 'block', ms: (performance.now() - t0) / chosen.length, bytes_before: bytes, bytes_after: 0, objective: change, extra: { shares_weights_of: `layers.${pair[0].index}` } });
    }
    removeUnused(model);
    return { layers: stats, warnings: [] };
  },
});
