import { STREAM_RESIDENT_BYTES } from '../calibrate/boundary-store.js';
import { Calibrator } from '../calibrate/calibrator.js';
import { calibrationFeeds } from '../calibrate/feeds.js';
import type { StatsCache } from '../calibrate/stats-cache.js';
import { loadDataset, loadProgressText } from '../data/load.js';
import { modelIo } from '../model/io.js';
import type { Model } from '../model/model.js';
import type { RunHooks } from '../pass/hooks.js';
import { entryWhere } from '../recipe/stage-path.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';
import { seededRandom } from '../util/random.js';
import { calibrationScope } from './calibration-scope.js';
import type { CompressRun, PassRecord } from './compress-run.js';
import { checkLayers, type RunnableRecipe, selectTargets } from './plan.js';
import type { Progress } from './progress.js';
import type { WorkDir } from './workdir.js';

/** The recipe's passes in order on one model, each recorded for the report and saved for --resume (compress.ts). */

/** What running the passes needs of compress's options. */
export interface PassRunOptions {
  progress: Progress;
  resume?: boolean;
  hooks?: RunHooks;
  statsCache?: StatsCache;
  /** --stream: boundary values spill past STREAM_RESIDENT_BYTES too */
  stream?: boolean;
}

/** Passes `start`… of the recipe on `model`, each saved to the work dir before the next. */
export async function runPasses(model: Model, run: CompressRun, start: number, work: WorkDir<PassRecord>, originalOnnx: () => string, threads: number, opts: PassRunOptions, modelKey: string): Promise<void> {
  const { recipe, seed } = run;
  const progress = opts.progress;
  // passes that can use calibration optionally (prune.channels) get it whenever the recipe has it
  const { calibrator, files } = start < recipe.recipe.passes.length ? await makeCalibrator(model, recipe, threads, progress, work.file('calibration'), opts.statsCache, opts.stream ? STREAM_RESIDENT_BYTES : undefined) : { files: [] };
  const tPasses = performance.now();
  const total = recipe.recipe.passes.length;
  for (let i = start; i < total; i++) {
    const entry = recipe.recipe.passes[i]!;
    const pass = entry.parsed;
    const layers = selectTargets(model, recipe, i);
    // again on the model as earlier passes left it: the up-front check stops at a pass that changes layers
    checkLayers(recipe, [{ index: i, layers }]);
    progress.pass(i, total, pass.id, layers.length);
    calibrator?.beginPass(opts.statsCache ? calibrationScope(modelKey, recipe, i, seed, files) : undefined);
    const tp = performance.now();
    const cpu0 = process.cpuUsage();
    const result = await pass.apply(model, {
      layers,
      seed,
      random: seededRandom(seed * 1000003 + i),
      calibration: calibrator,
      progress,
      where: entryWhere(entry, i),
      recipeDir: recipe.dir,
      original: originalOnnx,
      workFile: (name) => work.file(`pass-${i}-${name}`),
      resume: Boolean(opts.resume),
      hooks: opts.hooks,
    });
    const ms = performance.now() - tp;
    const cpu = process.cpuUsage(cpu0);
    // later passes calibrate with the past the model now declares
    for (const w of result.warnings) progress.warn(`${pass.id}: ${w}`);
    run.passes.push({
      id: pass.id,
      targets: entry.targets,
      ignore: entry.ignore,
      params: entry.params,
      ms,
      cpu_ms: (cpu.user + cpu.system) / 1000,
      ...(entry.stage ? { stage: entry.stage } : {}),
      layers: result.layers,
      warnings: result.warnings,
      ...(result.summary ? { summary: result.summary } : {}),
    });
    progress.passDone(i, total, pass.id, ms);
    if (i < total - 1) {
      work.save(model, i + 1, run.passes);
      await opts.hooks?.afterPass?.(i + 1);
    }
  }
  run.timings.passes_ms = performance.now() - tPasses;
  run.warnings.push(...(calibrator?.warnings ?? []).map((w) => `calibration: ${w}`));
  if (opts.statsCache) {
    run.calibrationCache = { dir: opts.statsCache.dir, ...opts.statsCache.counts };
    run.warnings.push(...opts.statsCache.warnings.map((w) => `calibration cache: ${w}`));
  }
}

/** The recipe's calibration data on `model`; none when the recipe has no calibration section. */
export async function makeCalibrator(
  model: Model,
  recipe: RunnableRecipe,
  threads: number,
  progress: Progress,
  spillDir: string,
  cache: StatsCache | undefined,
  residentBytes?: number,
): Promise<{ calibrator?: Calibrator; files: { sha256: string }[] }> {
  const cal = recipe.recipe.calibration;
  if (!cal) return { files: [] };
  progress.stage('loading calibration data');
  // calibration runs the first `samples` sequences; text is tokenized only that far
  const data = await loadDataset(cal.data, recipe.dir, { sequences: cal.samples, onProgress: (p) => progress.stage(`loading calibration data: ${loadProgressText(p)}`) });
  const io = await resolveKvShapes(model, modelIo(model), threads);
  const calibrator = new Calibrator(calibrationFeeds(io, data, cal.samples, cal.seq_len, recipe.path), cal.mode, threads, { spillDir, residentBytes, onWarning: (w) => progress.warn(`calibration: ${w}`), cache, hessianPrecision: cal.hessian_precision });
  return { calibrator, files: data.files };
}
