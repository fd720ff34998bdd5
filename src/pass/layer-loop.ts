import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import type { InputStats, StatsNeeds } from '../calibrate/stats.js';
import { phases } from '../util/phase-timer.js';
import type { LayerStat, PassContext } from './pass.js';

/** What a pass says about one layer; the loop adds name, kind, shape and time. */
export type LayerOutcome = Omit<LayerStat, 'name' | 'kind' | 'shape' | 'ms'>;

function stat(layer: LinearLayer, t0: number, outcome: LayerOutcome): LayerStat {
  return { name: layer.name, kind: layer.kind, shape: [layer.outFeatures, layer.inFeatures], ms: performance.now() - t0, ...outcome };
}

/** Runs `fn` on each selected layer in order, with progress and timing; `undefined` leaves a layer out of the stats. */
export async function eachLayer(ctx: PassContext, fn: (layer: LinearLayer) => Promise<LayerOutcome | undefined> | LayerOutcome | undefined): Promise<LayerStat[]> {
  const out: LayerStat[] = [];
  for (const [j, layer] of ctx.layers.entries()) {
    ctx.progress.layer(j, ctx.layers.length, layer.name);
    const t0 = performance.now();
    const outcome = await fn(layer);
    if (outcome) out.push(stat(layer, t0, outcome));
  }
  return out;
}

/**
 * Runs `fn` on each selected layer block by block with its calibration statistics: in sequential
 * mode a block's statistics are measured after the blocks before it were compressed.
 */
export async function eachCalibratedLayer(
  model: Model,
  ctx: PassContext,
  needs: StatsNeeds,
  fn: (layer: LinearLayer, stats: InputStats) => Promise<LayerOutcome | undefined>,
): Promise<LayerStat[]> {
  const out: LayerStat[] = [];
  let done = 0;
  for await (const { group, stats } of ctx.calibration!.blocks(model, ctx.layers, needs)) {
    for (const layer of group.layers) {
      ctx.progress.layer(done++, ctx.layers.length, layer.name);
      const t0 = performance.now();
      const outcome = await phases.time('solve', () => fn(layer, stats.get(layer.input)!));
      if (outcome) out.push(stat(layer, t0, outcome));
    }
  }
  return out;
}
