import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { StatsCache, type CacheCounts } from '../calibrate/stats-cache.js';
import { datasetFiles } from '../data/load.js';
import { UserError } from '../errors.js';
import { Checkpoint } from '../model/checkpoint.js';
import type { RunHooks } from '../pass/hooks.js';
import { loadRecipe, RecipeError } from '../recipe/parse.js';
import { expandSweep, type SweepAxis, type SweepPoint } from '../recipe/sweep-axes.js';
import { readReport, reportJson } from '../report/io.js';
import type { ConfiguredPass } from '../pass/pass.js';
import type { Report } from '../report/schema.js';
import { canonicalJson } from '../util/canonical-json.js';
import { sha256Bytes, sha256File } from '../util/hash.js';
import { assignShards, type Shard } from '../util/shard.js';
import { VERSION } from '../version.js';
import { modelIdentity } from './calibration-scope.js';
import { compress } from './compress.js';
import { checkLayersUpFront, planRecipe, type RunnableRecipe } from './plan.js';
import type { Progress } from './progress.js';
import { PASSES } from './registry.js';
import { expandSchedules } from './schedule.js';
import { pointCost } from './sweep-cost.js';

/**
 * `pare sweep`: every point of a recipe's sweep (sweep-axes.ts) run as a compress + eval into
 * DIR/<point id>/ (model.onnx, then report.json, written last and atomically: a point with its
 * report is finished and is skipped by a later run). `shard` runs only the points the cost-balanced
 * assignment gives it; every process computes the same assignment from the points alone.
 */

export interface SweepProgress {
  /** a point starts (k of the m this run works on); returns the progress its compress reports to */
  point(k: number, m: number, label: string, etaMs: number | undefined): Progress;
  pointDone(k: number, m: number, label: string, ms: number): void;
  warn(text: string): void;
}

export interface SweepOptions {
  model: string;
  recipe: string;
  /** `--set PATH=V1,V2` flags */
  sets: string[];
  /** the sweep's folder: one subfolder per point */
  output: string;
  shard?: Shard;
  /** continue interrupted points from their last completed pass */
  resume?: boolean;
  /** the statistics cache folder; false: none */
  cache: string | false;
  seed?: number;
  threads?: number;
  /** list the points and their shards; run and write nothing */
  dryRun?: boolean;
  progress: SweepProgress;
  hooks?: RunHooks;
}

export type PointStatus = 'ran' | 'finished' | 'other-shard' | 'planned';

export interface SweepPointRun {
  id: string;
  index: number;
  settings: [string, unknown][];
  /** expected cost (sweep-cost.ts) */
  cost: number;
  /** 1-based shard of the assignment (1 without --shard) */
  shard: number;
  dir: string;
  /** ran now; finished by an earlier run; another shard's; or listed by --dry-run */
  status: PointStatus;
  report?: Report;
}

export interface SweepRun {
  model: { path: string; sha256: string };
  recipe: { path: string; sha256: string };
  axes: Pick<SweepAxis, 'path' | 'values' | 'source'>[];
  shard?: Shard;
  points: SweepPointRun[];
  /** the statistics cache's counts over the points run now */
  cache?: CacheCounts & { dir: string };
  ms: number;
}

/** The point's folder name: its settings, then a hash of everything its result depends on. */
function pointId(point: SweepPoint<ConfiguredPass>, model: string, seed: number, fileHash: (path: string, what: string) => string): string {
  const r = point.recipe.recipe;
  const specs = [...(r.calibration ? [['calibration.data', r.calibration.data] as const] : []), ...(r.eval ? [['eval.data', r.eval.data] as const] : [])];
  const files = specs.flatMap(([where, spec]) => datasetFiles(spec, point.recipe.dir).map((f) => fileHash(f, `${point.recipe.path}: ${where}`)));
  const hash = sha256Bytes(canonicalJson({ model, recipe: point.identity, files, seed, pare: VERSION }));
  return `${point.label.slice(0, 80)}-${hash.slice(0, 8)}`;
}

/** A finished point's report, or undefined when it has none (or one that does not read back, which is re-run). */
function finishedReport(path: string, id: string, progress: SweepProgress): Report | undefined {
  if (!existsSync(path)) return undefined;
  try {
    const report = readReport(path);
    if (report.sweep?.id === id) return report;
    progress.warn(`${path} belongs to point ${report.sweep?.id ?? '(none)'}, not ${id}; running the point again`);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    progress.warn(`${e.message}; running the point again`);
  }
  return undefined;
}

/** Every point's recipe against the model's layers, before any point runs; the model's hash and identity. */
function checkEveryPoint(model: string, expanded: ReturnType<typeof expandSweep<ConfiguredPass>>): { modelSha: string; modelKey: string; runnable: RunnableRecipe[] } {
  const input = Checkpoint.open(model);
  const runnable: RunnableRecipe[] = [];
  try {
    for (const point of expanded.points) {
      try {
        // as compress runs it: a schedule's stages are known from the model's blocks
        const recipe = expandSchedules(input.model, point.recipe);
        planRecipe(input.model, recipe);
        checkLayersUpFront(input.model, recipe);
        runnable.push(recipe);
      } catch (e) {
        if (e instanceof RecipeError) throw new UserError(`sweep point ${point.label}: ${e.message.split('\n').slice(1).join('; ') || e.message}`);
        if (e instanceof UserError) throw new UserError(`sweep point ${point.label}: ${e.message}`);
        throw e;
      }
    }
    return { modelSha: input.sha256, modelKey: modelIdentity(input), runnable };
  } finally {
    input.close();
  }
}

export async function sweep(opts: SweepOptions): Promise<SweepRun> {
  const t0 = performance.now();
  const seed = opts.seed ?? 0;
  const base = loadRecipe(opts.recipe, PASSES);
  const expanded = expandSweep(base, opts.sets, PASSES);

  const { modelSha, modelKey, runnable } = checkEveryPoint(opts.model, expanded);

  const hashes = new Map<string, string>();
  const fileHash = (path: string, where: string) => {
    let h = hashes.get(path);
    if (h === undefined) {
      if (!existsSync(path)) throw new UserError(`${where}: ${path}: no such file`);
      hashes.set(path, (h = sha256File(path)));
    }
    return h;
  };
  const ids = expanded.points.map((p) => pointId(p, modelKey, seed, fileHash));
  // a schedule's distillation stages count in its point's cost
  const costs = runnable.map((r) => pointCost(r));
  const shardOf = assignShards(ids.map((id, i) => ({ id, cost: costs[i]! })), opts.shard?.count ?? 1);
  const points: SweepPointRun[] = expanded.points.map((p, i) => ({
    id: ids[i]!,
    index: p.index,
    settings: p.settings,
    cost: costs[i]!,
    shard: shardOf.get(ids[i]!)!,
    dir: join(opts.output, ids[i]!),
    status: opts.dryRun ? 'planned' : 'other-shard',
  }));
  const run: SweepRun = {
    model: { path: opts.model, sha256: modelSha },
    recipe: expanded.base,
    axes: expanded.axes.map(({ path, values, source }) => ({ path, values, source })),
    shard: opts.shard,
    points,
    ms: 0,
  };
  if (opts.dryRun) {
    run.ms = performance.now() - t0;
    return run;
  }

  const mine = points.filter((p) => p.shard === (opts.shard?.index ?? 1));
  const todo: { point: SweepPointRun; sweepPoint: SweepPoint<ConfiguredPass> }[] = [];
  for (const p of mine) {
    const report = finishedReport(join(p.dir, 'report.json'), p.id, opts.progress);
    if (report) Object.assign(p, { status: 'finished', report });
    else todo.push({ point: p, sweepPoint: expanded.points[points.indexOf(p)]! });
  }

  const cacheDir = opts.cache === false ? undefined : opts.cache;
  const totals = await runPoints(opts, todo, points.length, expanded.base, seed, cacheDir);
  if (cacheDir) run.cache = { dir: cacheDir, ...totals };
  run.ms = performance.now() - t0;
  return run;
}

/** Runs this shard's unfinished points one after another; the stats-cache counts of them all. */
async function runPoints(
  opts: SweepOptions,
  todo: { point: SweepPointRun; sweepPoint: SweepPoint<ConfiguredPass> }[],
  count: number,
  base: SweepRun['recipe'],
  seed: number,
  cacheDir: string | undefined,
): Promise<CacheCounts> {
  const totals: CacheCounts = { hits: 0, misses: 0, unreadable: 0 };
  const remaining = todo.reduce((s, t) => s + t.point.cost, 0);
  let doneCost = 0;
  const tRun = performance.now();
  for (const [k, { point, sweepPoint }] of todo.entries()) {
    const eta = doneCost > 0 ? ((performance.now() - tRun) / doneCost) * (remaining - doneCost) : undefined;
    const progress = opts.progress.point(k, todo.length, point.id, eta);
    const tp = performance.now();
    // one cache object per point, so each report counts its own hits
    const statsCache = cacheDir ? new StatsCache(cacheDir, (w) => progress.warn(w)) : undefined;
    const sweepInfo = { id: point.id, index: point.index, count, settings: point.settings, base };
    const result = await compress({
      model: opts.model,
      recipe: sweepPoint.recipe,
      output: join(point.dir, 'model.onnx'),
      // report.json moves into place last, with the model: a point with a report is finished
      reports: [{ path: join(point.dir, 'report.json'), what: `the report of sweep point ${point.id}`, render: (r) => reportJson({ ...r, sweep: sweepInfo }) }],
      // the point folders are the sweep's own
      mkdir: true,
      // only a point that was interrupted has a work folder to resume from
      resume: opts.resume && existsSync(join(point.dir, '.pare-work')),
      seed,
      threads: opts.threads,
      progress,
      hooks: opts.hooks,
      statsCache,
    });
    progress.stop();
    const report: Report = { ...result.report!, sweep: sweepInfo };
    Object.assign(point, { status: 'ran', report });
    if (statsCache) for (const key of ['hits', 'misses', 'unreadable'] as const) totals[key] += statsCache.counts[key];
    doneCost += point.cost;
    opts.progress.pointDone(k, todo.length, point.id, performance.now() - tp);
  }
  return totals;
}
