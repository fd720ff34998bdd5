import { UserError } from '../errors.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { captureSession } from '../runtime/ort.js';
import { groupIntoBlocks, type LayerGroup } from './blocks.js';
import type { Feeds } from './feeds.js';
import { InputStatsAccumulator, type InputStats, type StatsNeeds } from './stats.js';

export type CalibrationMode = 'sequential' | 'oneshot';

/**
 * Runs calibration samples through ONNX Runtime and accumulates, per activation tensor feeding a
 * targeted linear, what the passes need (XᵀX, max |x| and Σx² per input channel), one sample at a
 * time so no activation is kept.
 *
 * sequential (SparseGPT/GPTQ reference protocol): `blocks` yields the model's blocks in order and
 * computes each block's statistics on the model as it is when the block comes up, so block i sees
 * the outputs of the already-compressed blocks before it. oneshot: every statistic comes from the
 * model as it was before the pass started.
 */
export class Calibrator {
  constructor(
    readonly feeds: Feeds[],
    readonly mode: CalibrationMode,
    readonly threads = 0,
  ) {
    if (feeds.length === 0) throw new UserError('calibration: the dataset produced no samples; check calibration.data');
  }

  /** Statistics of the inputs of `layers` on `model` as it is now, keyed by input tensor name. */
  async collect(model: Model, layers: readonly LinearLayer[], needs: StatsNeeds): Promise<Map<string, InputStats>> {
    const byTensor = new Map<string, InputStatsAccumulator>();
    for (const layer of layers) {
      if (byTensor.has(layer.input)) continue;
      byTensor.set(layer.input, new InputStatsAccumulator(layer, needs));
    }
    const names = [...byTensor.keys()];
    const session = await captureSession(model, names, { threads: this.threads });
    try {
      for (const feed of this.feeds) {
        const out = await session.run(feed, names);
        for (const name of names) {
          const t = out[name]!;
          await byTensor.get(name)!.add(t.data as Float32Array, t.dims as number[]);
          t.dispose?.();
        }
      }
    } finally {
      await session.release();
    }
    const stats = new Map<string, InputStats>();
    for (const [name, acc] of byTensor) stats.set(name, await acc.result());
    return stats;
  }

  /**
   * The target layers block by block with their input statistics. The caller changes a block's
   * weights before asking for the next one; in sequential mode the next block's inputs flow
   * through those changes.
   */
  async *blocks(model: Model, layers: readonly LinearLayer[], needs: StatsNeeds): AsyncGenerator<{ group: LayerGroup; stats: Map<string, InputStats> }> {
    const groups = groupIntoBlocks(layers);
    const all = this.mode === 'oneshot' ? await this.collect(model, layers, needs) : undefined;
    for (const group of groups) {
      yield { group, stats: all ?? (await this.collect(model, group.layers, needs)) };
    }
  }
}
