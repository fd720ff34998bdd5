import { availableParallelism } from 'node:os';
import { existsSync, realpathSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { Calibrator } from '../calibrate/calibrator.js';
import { calibrationFeeds } from '../calibrate/feeds.js';
import { modelIo } from '../model/io.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';
import { loadDataset, loadProgressText } from '../data/load.js';
import { UserError } from '../errors.js';
import { evaluate, type Evaluation, type Measure } from '../eval/evaluate.js';
import { modelSize } from '../model/size.js';
import { formatOf, loadModel } from '../model/load.js';
import type { Model } from '../model/model.js';
import { writeOnnx } from '../model/onnx-io.js';
import { writeModelAsSafetensors } from '../model/to-safetensors.js';
import { type LoadedRecipe, loadRecipe } from '../recipe/parse.js';
import { PASSES } from './registry.js';
import { sha256Bytes, sha256File } from '../util/hash.js';
import { VERSION } from '../version.js';
import type { PassReport } from '../report/schema.js';
import { seededRandom } from '../util/random.js';
import { planRecipe, selectTargets, type PlannedPass } from './plan.js';
import type { Progress } from './progress.js';
import { WorkDir } from './workdir.js';

export interface CompressOptions {
  model: string;
  recipe: string;
  output: string;
  dryRun?: boolean;
  resume?: boolean;
  /** rewritten initializers of at least 16 KiB go to a spill file in the work dir (Model.spillTo) */
  stream?: boolean;
  seed?: number;
  threads?: number;
  progress: Progress;
}

/** One pass as it ran, for the report and the work dir's state. */
export type PassRecord = PassReport;

export interface CompressRun {
  input: { path: string; sha256: string; format: string };
  output?: { path: string; sha256: string; format: string; files: string[] };
  recipe: LoadedRecipe;
  seed: number;
  plan: PlannedPass[];
  passes: PassRecord[];
  evaluation?: Evaluation;
  /** sizes of input and output, measured from the files when the recipe has no eval */
  sizes?: { reference: Measure; model: Measure };
  dataDescription?: { description: string; files: { path: string; sha256: string }[] };
  resumedAfter?: number;
  warnings: string[];
  timings: { total_ms: number; passes_ms: number; eval_ms?: number };
}

/** Refuse outputs that would overwrite the input or that the input's format cannot become. */
function checkOutput(input: string, output: string): 'onnx' | 'safetensors' {
  const same = resolve(input) === resolve(output) || (existsSync(output) && existsSync(input) && realpathSync(input) === realpathSync(output));
  if (same) throw new UserError(`${output}: -o names the input model; pare never overwrites its input, choose another output path`);
  const ext = extname(output).toLowerCase();
  if (ext === '.onnx') return 'onnx';
  if (ext === '.safetensors') {
    if (formatOf(input) !== 'safetensors') throw new UserError(`${output}: safetensors output needs a safetensors input; write .onnx for an ONNX model`);
    return 'safetensors';
  }
  throw new UserError(`${output}: unknown output format '${ext || '(none)'}'; use .onnx (or .safetensors for a safetensors input)`);
}

const STREAM_THRESHOLD = 16 * 1024;

export async function compress(opts: CompressOptions): Promise<CompressRun> {
  const t0 = performance.now();
  const progress = opts.progress;
  const outFormat = checkOutput(opts.model, opts.output);
  const recipe = loadRecipe(opts.recipe, PASSES);
  const seed = opts.seed ?? 0;
  const threads = opts.threads ?? availableParallelism();
  progress.stage(`loading ${opts.model}`);
  let model = loadModel(opts.model);
  const input = { path: opts.model, sha256: sha256File(opts.model), format: formatOf(opts.model) };
  const plan = planRecipe(model, recipe.recipe, recipe.path);
  const run: CompressRun = { input, recipe, seed, plan, passes: [], warnings: [], timings: { total_ms: 0, passes_ms: 0 } };
  if (opts.dryRun) {
    run.timings.total_ms = performance.now() - t0;
    return run;
  }

  const work = new WorkDir<PassRecord>(opts.output, sha256Bytes(Buffer.from([input.sha256, recipe.sha256, seed, VERSION].join('\n'))));
  let start = 0;
  const saved = opts.resume ? work.load() : undefined;
  if (opts.resume && !saved) progress.warn(`--resume: no completed pass to resume from in ${work.dir}; starting from the first pass`);
  if (saved) {
    model.close();
    model = work.loadCheckpoint(saved);
    start = saved.completed;
    run.passes = saved.passes;
    run.resumedAfter = saved.completed;
    progress.stage(`resuming after pass ${saved.completed}/${recipe.recipe.passes.length}`);
  } else if (!opts.resume) {
    work.reset();
  }
  if (opts.stream) model.spillTo(work.file('spill.bin'), STREAM_THRESHOLD);
  // the input as ONNX: the reference of eval and the teacher of distillation
  const originalOnnx = (): string => {
    if (input.format === 'onnx') return opts.model;
    const path = work.file('reference.onnx');
    if (!existsSync(path)) {
      const original = loadModel(opts.model);
      writeOnnx(original, path);
      original.close();
    }
    return path;
  };
  const referencePath = recipe.recipe.eval?.reference ? originalOnnx() : opts.model;

  const calibrator = await makeCalibrator(model, recipe, start, threads, progress, work.file('calibration'));
  const tPasses = performance.now();
  const total = recipe.recipe.passes.length;
  for (let i = start; i < total; i++) {
    const entry = recipe.recipe.passes[i]!;
    const { pass, layers } = selectTargets(model, recipe.recipe, i, recipe.path);
    progress.pass(i, total, pass.id, layers.length);
    const tp = performance.now();
    const result = await pass.apply(model, entry.params, {
      layers,
      seed,
      random: seededRandom(seed * 1000003 + i),
      calibration: calibrator,
      progress,
      where: `passes[${i}]`,
      recipeDir: recipe.dir,
      original: originalOnnx,
      workFile: (name) => work.file(`pass-${i}-${name}`),
      resume: Boolean(opts.resume),
    });
    const ms = performance.now() - tp;
    for (const w of result.warnings) progress.warn(`${pass.id}: ${w}`);
    run.passes.push({ id: pass.id, targets: entry.targets, ignore: entry.ignore, params: entry.params, ms, layers: result.layers, warnings: result.warnings, ...(result.summary ? { summary: result.summary } : {}) });
    progress.passDone(i, total, pass.id, ms);
    if (i < total - 1) {
      work.save(model, i + 1, run.passes);
      // lets the interruption tests kill the run at a known point
      if (process.env.PARE_HOLD_AFTER_PASS === String(i + 1)) await new Promise(() => setInterval(() => {}, 1000));
    }
  }
  run.timings.passes_ms = performance.now() - tPasses;

  progress.stage(`writing ${opts.output}`);
  const written = outFormat === 'onnx' ? writeOnnx(model, opts.output, { externalData: recipe.recipe.output.external_data || undefined }).files : writeModelAsSafetensors(model, opts.output, opts.model);
  run.output = { path: opts.output, sha256: sha256File(opts.output), format: outFormat, files: written };
  model.close();

  const evalSpec = recipe.recipe.eval;
  if (evalSpec) {
    const te = performance.now();
    progress.stage('evaluating original and compressed models');
    const data = await loadDataset(evalSpec.data, recipe.dir, { onProgress: (p) => progress.stage(`loading evaluation data: ${loadProgressText(p)}`) });
    run.dataDescription = { description: data.description, files: data.files };
    const evalModel = outFormat === 'onnx' ? opts.output : work.file('compressed.onnx');
    if (outFormat !== 'onnx') writeOnnx(loadModel(opts.output), evalModel);
    const latency = evalSpec.latency ? { runs: evalSpec.latency.runs, warmup: evalSpec.latency.warmup } : false;
    run.evaluation = await evaluate(evalModel, data, { threads: evalSpec.latency?.threads ?? threads, latency, dataPath: recipe.path }, evalSpec.reference ? referencePath : undefined);
    run.timings.eval_ms = performance.now() - te;
  } else {
    // without eval the report still gives both sizes (evaluate measures them when there is one)
    run.sizes = { reference: sizeMeasure(opts.model), model: sizeMeasure(opts.output, written) };
  }
  work.remove();
  progress.stop();
  run.warnings.push(...(calibrator?.warnings ?? []).map((w) => `calibration: ${w}`), ...run.passes.flatMap((p) => (p.warnings ?? []).map((w) => `${p.id}: ${w}`)));
  run.timings.total_ms = performance.now() - t0;
  return run;
}

async function makeCalibrator(model: Model, recipe: LoadedRecipe, start: number, threads: number, progress: Progress, spillDir: string): Promise<Calibrator | undefined> {
  // passes that can use calibration optionally (prune.channels) get it whenever the recipe has it
  const cal = recipe.recipe.calibration;
  if (!cal || start >= recipe.recipe.passes.length) return undefined;
  progress.stage('loading calibration data');
  // calibration runs the first `samples` sequences; text is tokenized only that far
  const data = await loadDataset(cal.data, recipe.dir, { sequences: cal.samples, onProgress: (p) => progress.stage(`loading calibration data: ${loadProgressText(p)}`) });
  const io = await resolveKvShapes(model, modelIo(model), threads);
  return new Calibrator(calibrationFeeds(io, data, cal.samples, cal.seq_len, recipe.path), cal.mode, threads, { spillDir, onWarning: (w) => progress.warn(`calibration: ${w}`) });
}

function sizeMeasure(path: string, files?: string[]): Measure {
  const m = loadModel(path);
  try {
    return { path, sha256: sha256File(path), size: modelSize(m, files) };
  } finally {
    m.close();
  }
}
