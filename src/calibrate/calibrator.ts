/**
 * src/calibrate — layer 6 (above runtime): calibration statistics measured in ONNX Runtime, one
 * sample at a time, whole-model or block by block.
 */
import { UserError } from '../errors.js';
import type { GramPrecision } from '../linalg/gram.js';
import type { LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { calibrationSessionOptions, captureSession } from '../runtime/ort.js';
import { phases } from '../util/phase-timer.js';
import { BlockCut, uncuttable, type StepTrace } from './block-cut.js';
import { groupIntoBlocks, type LayerGroup } from './blocks.js';
import { BoundaryStore, DEFAULT_RESIDENT_BYTES } from './boundary-store.js';
import { fitFeeds, type Feeds } from './feeds.js';
import type { StatsCache } from './stats-cache.js';
import { InputStatsAccumulator, type InputStats, type StatsNeeds } from './stats.js';

export type CalibrationMode = 'sequential' | 'oneshot';

export interface CalibratorOptions {
  /** sequential mode: cut the graph into per-block sub-graphs and cache boundary values (default true); false re-runs the whole prefix for every block */
  cut?: boolean;
  /** boundary values kept in memory up to this many bytes, the rest spilled to files (default 256 MiB) */
  residentBytes?: number;
  /** folder for spill files (the run's work dir; default os.tmpdir()) */
  spillDir?: string;
  /** where fallback warnings go (default: stderr); they are also kept in `warnings` */
  onWarning?: (message: string) => void;
  /** statistics shared across runs (see beginPass) */
  cache?: StatsCache;
  /** sequential cut steps feed float initializers of this many bytes or more as inputs instead of inlining them (default 16 MiB) */
  fedWeightBytes?: number;
  /** precision of each block of rows' XᵀX product, summed in float64 either way (default 'float32'; src/linalg/gram.ts) */
  hessianPrecision?: GramPrecision;
}

/**
 * Runs calibration samples through ONNX Runtime and accumulates, per activation tensor feeding a
 * targeted linear, what the passes need (XᵀX, max |x| and Σx² per input channel), one sample at a
 * time so no activation is kept.
 *
 * sequential (SparseGPT/GPTQ reference protocol): `blocks` yields the model's blocks in order and
 * computes each block's statistics on the model as it is when the block comes up, so block i sees
 * the outputs of the already-compressed blocks before it. oneshot: every statistic comes from the
 * model as it was before the pass started.
 *
 * Sequential mode runs each block's sub-graph on cached boundary values (BlockCut), about two
 * block forwards per block; a graph that cannot be cut falls back, with a warning, to re-running
 * the whole model prefix for every block, which gives the same statistics in O(blocks²) work.
 *
 * With a cache, the first statistics a pass asks for (collect, oneshot blocks, or block 0 of a
 * sequential run) are measured on the model as the pass found it, which the runner's scope pins
 * (beginPass); they are looked up and stored under that scope. Later requests of the pass see a
 * model the pass has already changed and are always computed.
 */
export class Calibrator {
  constructor(
    readonly feeds: Feeds[],
    readonly mode: CalibrationMode,
    readonly threads = 0,
    readonly options: CalibratorOptions = {},
  ) {
    if (feeds.length === 0) throw new UserError('calibration: the dataset produced no samples; check calibration.data');
  }

  readonly warnings: string[] = [];
  /** the sub-graph steps of the last sequential run (empty when it re-ran full prefixes) */
  trace: StepTrace[] = [];
  /** boundary bytes the last sequential run spilled to files */
  spilledBytes = 0;
  /** the most boundary bytes the last sequential run held in memory at once */
  peakBoundaryBytes = 0;
  /** the cache scope of the pass about to run, until its first statistics request takes it */
  private scope: string | undefined;

  /**
   * Called by the runner before each pass: `scope` pins the model as the pass will find it (input
   * model, the passes before, calibration data and settings), or is undefined when there is no
   * cache to use.
   */
  beginPass(scope: string | undefined): void {
    this.scope = this.options.cache ? scope : undefined;
  }

  /** The samples as `model` takes them now (a pass may have removed a block's cache or shrunk its heads). */
  feedsFor(model: Model): Feeds[] {
    return fitFeeds(model, this.feeds);
  }

  /** Statistics of the inputs of `layers` on `model` as it is now, keyed by input tensor name. */
  async collect(model: Model, layers: readonly LinearLayer[], needs: StatsNeeds): Promise<Map<string, InputStats>> {
    return this.collectIn(model, layers, needs, this.takeScope());
  }

  /** The scope, once per pass: later requests see a model the pass may have changed. */
  private takeScope(): string | undefined {
    const scope = this.scope;
    this.scope = undefined;
    return scope === undefined ? undefined : `${scope}/${this.mode}`;
  }

  private async collectIn(model: Model, layers: readonly LinearLayer[], needs: StatsNeeds, scope: string | undefined): Promise<Map<string, InputStats>> {
    const stats = this.cached(layers, needs, scope);
    const byTensor = new Map<string, InputStatsAccumulator>();
    for (const layer of layers) {
      if (byTensor.has(layer.input) || stats.has(layer.input)) continue;
      byTensor.set(layer.input, new InputStatsAccumulator(layer, needs, this.options.hessianPrecision));
    }
    const names = [...byTensor.keys()];
    if (names.length === 0) return stats;
    const session = await phases.time('calibrate.session', () => captureSession(model, names, calibrationSessionOptions(this.threads)));
    try {
      for (const feed of this.feedsFor(model)) {
        const out = await phases.time('calibrate.forward', () => session.run(feed, names));
        for (const name of names) {
          const t = out[name]!;
          await phases.time('calibrate.xtx', () => byTensor.get(name)!.add(t.data as Float32Array, t.dims as number[]));
          t.dispose?.();
        }
      }
    } finally {
      await phases.time('calibrate.session', () => session.release());
    }
    for (const [name, acc] of byTensor) stats.set(name, await phases.time('calibrate.xtx', () => acc.result()));
    if (scope !== undefined) for (const name of names) this.options.cache!.put(scope, stats.get(name)!);
    return stats;
  }

  /** What the cache holds for the layers' input tensors under `scope`. */
  private cached(layers: readonly LinearLayer[], needs: StatsNeeds, scope: string | undefined): Map<string, InputStats> {
    const found = new Map<string, InputStats>();
    if (scope === undefined) return found;
    for (const tensor of new Set(layers.map((l) => l.input))) {
      const s = this.options.cache!.get(scope, tensor, needs);
      if (s) found.set(tensor, s);
    }
    return found;
  }

  /**
   * The target layers block by block with their input statistics. The caller changes a block's
   * weights before asking for the next one; in sequential mode the next block's inputs flow
   * through those changes.
   */
  async *blocks(model: Model, layers: readonly LinearLayer[], needs: StatsNeeds): AsyncGenerator<{ group: LayerGroup; stats: Map<string, InputStats> }> {
    const groups = groupIntoBlocks(layers);
    const scope = this.takeScope();
    if (this.mode === 'oneshot') {
      const all = await this.collectIn(model, layers, needs, scope);
      for (const group of groups) yield { group, stats: all };
      return;
    }
    this.trace = [];
    const why = this.options.cut === false ? 'disabled' : uncuttable(model);
    if (why && why !== 'disabled') this.warn(`sequential calibration re-runs the whole model prefix for every block (O(blocks²) work): ${why}`);
    let cut = why ? undefined : new BlockCut(model, groups, this.feedsFor(model), new BoundaryStore(this.options.residentBytes ?? DEFAULT_RESIDENT_BYTES, this.options.spillDir), this.threads, { fedWeightBytes: this.options.fedWeightBytes, hessianPrecision: this.options.hessianPrecision });
    if (cut) this.trace = cut.trace;
    try {
      for (const [j, group] of groups.entries()) {
        // only block 0 sees the model as the pass found it
        const blockScope = j === 0 ? scope : undefined;
        let stats: Map<string, InputStats> | undefined;
        if (cut) {
          try {
            stats = await this.cutStep(cut, j, group, needs, blockScope);
          } catch (e) {
            this.warn(`sequential calibration could not run block '${group.key}' as a sub-graph (${String((e as Error)?.message ?? e).split('\n')[0]}); re-running the whole model prefix for this and later blocks`);
            cut.close();
            cut = undefined;
          }
        }
        yield { group, stats: stats ?? (await this.collectIn(model, group.layers, needs, blockScope)) };
      }
    } finally {
      this.spilledBytes = cut?.spilledBytes ?? 0;
      this.peakBoundaryBytes = cut?.peakResidentBytes ?? 0;
      cut?.close();
    }
  }

  /** One sequential step; with every statistic of the block cached it still runs, for the boundary values later blocks start from. */
  private async cutStep(cut: BlockCut, j: number, group: LayerGroup, needs: StatsNeeds, scope: string | undefined): Promise<Map<string, InputStats>> {
    const cached = this.cached(group.layers, needs, scope);
    const complete = group.layers.every((l) => cached.has(l.input));
    if (complete) {
      await cut.step(j, needs, { stats: false });
      return cached;
    }
    const stats = await cut.step(j, needs);
    if (scope !== undefined) for (const s of stats.values()) this.options.cache!.put(scope, s);
    return stats;
  }

  private warn(message: string): void {
    this.warnings.push(message);
    if (this.options.onWarning) this.options.onWarning(message);
    else process.stderr.write(`warning: ${message}\n`);
  }
}
