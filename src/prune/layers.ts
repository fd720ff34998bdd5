import { z } from 'zod';
import { UserError } from '../errors.js';
import { blocksOfLayers, compactKvCache, initializerBytes, removeBlock, type DecoderBlock } from '../model/blocks.js';
import { captureSession } from '../runtime/ort.js';
import { definePass, type LayerStat } from '../pass/pass.js';

/**
 * Whole-block removal by the angular distance between a block's input and output hidden states on
 * calibration data (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers";
 * ShortGPT's Block Influence ranks the same way for single blocks): d = arccos(cos(x_in, x_out))/π
 * averaged over tokens. `contiguous` removes the run of n consecutive blocks whose input and
 * output are closest (Gromov); otherwise the n individually least influential blocks (ShortGPT).
 */

const LayersParams = z.strictObject({
  count: z.number().int().min(1).default(1).describe('blocks to remove'),
  contiguous: z.boolean().default(false).describe('remove one run of `count` consecutive blocks (Gromov et al.) instead of the individually closest ones'),
  blocks: z.array(z.number().int().min(0)).optional().describe('remove exactly these block indices instead of choosing by calibration'),
});

/** Mean over tokens of arccos(cos(a_t, b_t))/π for hidden states [.., H]. */
export function angularDistance(a: Float32Array, b: Float32Array, hidden: number): { sum: number; count: number } {
  let sum = 0;
  let count = 0;
  for (let t = 0; t < a.length; t += hidden) {
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let j = t; j < t + hidden; j++) {
      dot += a[j]! * b[j]!;
      na += a[j]! * a[j]!;
      nb += b[j]! * b[j]!;
    }
    const cos = Math.max(-1, Math.min(1, dot / Math.sqrt(na * nb || 1)));
    sum += Math.acos(cos) / Math.PI;
    count++;
  }
  return { sum, count };
}

export const layers = definePass({
  id: 'prune.layers',
  summary: 'remove whole decoder blocks chosen by the angular distance between their input and output on calibration data',
  params: LayersParams,
  needsCalibration: () => ({ need: 'required' }),
  changesLayers: true,
  async apply(model, params, ctx) {
    const blocks = blocksOfLayers(model, ctx.layers.map((l) => l.name));
    if (blocks.length === 0) throw new UserError(`prune.layers: ${ctx.where}.targets select no decoder block (block nodes are named /layers.N/...)`);
    if (params.count >= blocks.length) throw new UserError(`prune.layers: count ${params.count} would remove all ${blocks.length} targeted blocks; lower ${ctx.where}.params.count`);
    const t0 = performance.now();
    const distance = new Map<string, number>();
    let chosen: DecoderBlock[];
    if (params.blocks) {
      const bad = params.blocks.find((i) => !blocks.some((b) => b.index === i));
      if (bad !== undefined) throw new UserError(`prune.layers: ${ctx.where}.params.blocks names block ${bad}, which the targets do not select (have ${blocks.map((b) => b.index).join(', ')})`);
      chosen = blocks.filter((b) => params.blocks!.includes(b.index));
    } else {
      // hidden states at every block boundary, one calibration sample at a time
      const names = [...new Set(blocks.flatMap((b) => [b.input, b.output]))];
      const session = await captureSession(model, names, { threads: ctx.calibration!.threads });
      const sums = new Map<string, { sum: number; count: number }>();
      const key = (a: string, b: string) => `${a}→${b}`;
      const spans: [string, string, DecoderBlock[]][] = [];
      for (let s = 0; s + params.count <= blocks.length; s++) {
        const run = blocks.slice(s, s + params.count);
        if (!params.contiguous && params.count > 1 && run.length > 1) continue;
        spans.push([run[0]!.input, run.at(-1)!.output, run]);
      }
      if (!params.contiguous) for (const b of blocks) if (!spans.some(([a, o]) => a === b.input && o === b.output)) spans.push([b.input, b.output, [b]]);
      for (const feed of ctx.calibration!.feedsFor(model)) {
        const out = await session.run(feed, names);
        for (const [a, b] of spans) {
          const ta = out[a]!;
          const d = angularDistance(ta.data as Float32Array, out[b]!.data as Float32Array, ta.dims.at(-1) as number);
          const acc = sums.get(key(a, b)) ?? { sum: 0, count: 0 };
          sums.set(key(a, b), { sum: acc.sum + d.sum, count: acc.count + d.count });
        }
      }
      await session.release();
      const score = ([a, b]: [string, string, DecoderBlock[]]) => sums.get(key(a, b))!.sum / sums.get(key(a, b))!.count;
      for (const span of spans) if (span[2].length === 1) distance.set(`layers.${span[2][0]!.index}`, score(span));
      if (params.contiguous) {
        const best = spans.filter((s) => s[2].length === params.count).sort((x, y) => score(x) - score(y))[0]!;
        chosen = best[2];
      } else {
        chosen = blocks
          .map((b) => ({ b, d: distance.get(`layers.${b.index}`)! }))
          .sort((x, y) => x.d - y.d || x.b.index - y.b.index)
          .slice(0, params.count)
          .map((x) => x.b);
      }
    }
    const stats: LayerStat[] = [];
    for (const [j, block] of chosen.entries()) {
      ctx.progress.layer(j, chosen.length, `layers.${block.index}`);
      const bytes = initializerBytes(model, block.nodes.flatMap((n) => n.input ?? []));
      const d = distance.get(`layers.${block.index}`);
      stats.push({ name: `layers.${block.index}`, kind: 'block', ms: (performance.now() - t0) / chosen.length, bytes_before: bytes, bytes_after: 0, ...(d !== undefined ? { objective: d } : {}), extra: { removed: 1 } });
    }
    // remove from the last so earlier blocks' tensors keep their meaning
    for (const block of [...chosen].sort((a, b) => b.index - a.index)) removeBlock(model, block);
    const kv = compactKvCache(model);
    const summary = kv.dropped.length
      ? { kv_cache: `past/present of cache layer${kv.dropped.length === 1 ? '' : 's'} ${kv.dropped.join(', ')} removed${kv.renumbered.length ? `; ${kv.renumbered.map(([a, b]) => `${a} → ${b}`).join(', ')} renumbered` : ''}` }
      : undefined;
    return { layers: stats, warnings: [], ...(summary ? { summary } : {}) };
  },
});
