/**
 * src/pipeline — layer 13: the runner. registry.ts is the one list of passes (imported only here
 * and by the CLI); compress.ts runs a recipe on a checkpoint.
 */
import { availableParallelism } from 'node:os';
import { existsSync, realpathSync } from 'node:fs';
import { extname, join, relative, resolve, sep } from 'node:path';
import { Calibrator } from '../calibrate/calibrator.js';
import type { Fidelity } from '../eval/fidelity.js';
import { isFolderOutput, type WebDtype } from '../model/hf-folder.js';
import { calibrationFeeds } from '../calibrate/feeds.js';
import { modelIo } from '../model/io.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';
import { loadDataset, loadProgressText } from '../data/load.js';
import { UserError } from '../errors.js';
import { checkpointFacts, evaluate, type CheckpointFacts, type EvalOptions, type Evaluation, type Measure } from '../eval/evaluate.js';
import type { BuildOptions } from '../model/builders/index.js';
import { Checkpoint } from '../model/checkpoint.js';
import { formatOf } from '../model/load.js';
import type { Model } from '../model/model.js';
import { writeOnnx } from '../model/onnx-io.js';
import { writeModelAsSafetensors } from '../model/to-safetensors.js';
import { loadRecipe } from '../recipe/parse.js';
import { PASSES } from './registry.js';
import { sha256Bytes, sha256File } from '../util/hash.js';
import { VERSION } from '../version.js';
import type { RunHooks } from '../pass/hooks.js';
import type { PassReport } from '../report/schema.js';
import { seededRandom } from '../util/random.js';
import { checkLayers, checkLayersUpFront, planRecipe, type PlannedPass, type RunnableRecipe, selectTargets } from './plan.js';
import type { Progress } from './progress.js';
import { WorkDir } from './workdir.js';
import { folderDtypes, planModelFolder, type FolderPlan, type FolderSources } from './folder-plan.js';
import { writeModelFolder, type WrittenFolder } from './folder-write.js';

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
  /** where a test may hold the run (interruption tests) */
  hooks?: RunHooks;
  /** how a safetensors input is built into a graph (default: with the KV cache) */
  build?: BuildOptions;
  /** a model folder's files, one per dtype (overrides the recipe's output.dtypes) */
  dtypes?: string[];
  /** config.json and tokenizer for a model folder whose input carries none */
  folder?: FolderSources;
}

/** One pass as it ran, for the report and the work dir's state. */
export type PassRecord = PassReport;

export interface CompressRun {
  input: { path: string; sha256: string; format: string };
  output?: { path: string; sha256: string; format: string; files: string[] };
  recipe: RunnableRecipe;
  seed: number;
  plan: PlannedPass[];
  passes: PassRecord[];
  evaluation?: Evaluation;
  /** a model folder output: what it holds, planned before the passes */
  folder?: FolderPlan;
  /** a model folder output: each dtype's file as written and measured (evaluated when the recipe has eval) */
  variants?: VariantRecord[];
  /** sizes of input and output, measured from the files when the recipe has no eval */
  sizes?: { reference: Measure; model: Measure };
  dataDescription?: { description: string; files: { path: string; sha256: string }[] };
  resumedAfter?: number;
  warnings: string[];
  timings: { total_ms: number; passes_ms: number; eval_ms?: number };
}

/** One dtype's file of a model folder output, as written and measured. */
export interface VariantRecord {
  dtype: WebDtype;
  path: string;
  files: string[];
  passes: PassRecord[];
  warnings: string[];
  measure: Measure;
  fidelity?: Fidelity;
}

/** Refuse outputs that would overwrite the input or that the input's format cannot become. */
function checkOutput(input: string, output: string): OutputFormat {
  const same = resolve(input) === resolve(output) || (existsSync(output) && existsSync(input) && realpathSync(input) === realpathSync(output));
  if (same) throw new UserError(`${output}: -o names the input model; pare never overwrites its input, choose another output path`);
  if (isFolderOutput(output)) {
    const inside = (path: string, dir: string) => resolve(path).startsWith(`${resolve(dir)}${sep}`);
    if (inside(input, output) || (existsSync(output) && existsSync(input) && inside(realpathSync(input), realpathSync(output)))) {
      throw new UserError(`${output}: the model folder would be written over the input ${input} and the files beside it; pare never modifies its input, choose another folder`);
    }
    return 'folder';
  }
  const ext = extname(output).toLowerCase();
  if (ext === '.onnx') return 'onnx';
  if (ext === '.safetensors') {
    if (formatOf(input) !== 'safetensors') throw new UserError(`${output}: safetensors output needs a safetensors input; write .onnx for an ONNX model`);
    return 'safetensors';
  }
  throw new UserError(`${output}: unknown output format '${ext || '(none)'}'; use .onnx (or .safetensors for a safetensors input), or end it with / for a transformers.js model folder`);
}

type OutputFormat = 'onnx' | 'safetensors' | 'folder';

const STREAM_THRESHOLD = 16 * 1024;

export async function compress(opts: CompressOptions): Promise<CompressRun> {
  const t0 = performance.now();
  const progress = opts.progress;
  const outFormat = checkOutput(opts.model, opts.output);
  const recipe = loadRecipe(opts.recipe, PASSES);
  const dtypes = folderDtypes(recipe, outFormat === 'folder', opts);
  if (recipe.recipe.passes.length === 0 && !(dtypes && !dtypes.asIs)) {
    throw new UserError(`${recipe.path}: passes is empty and no dtypes are asked for, so there is nothing to do; add a pass, or convert into a model folder (-o DIR/ with --dtypes or output.dtypes)`);
  }
  const seed = opts.seed ?? 0;
  progress.stage(`loading ${opts.model}`);
  const input = Checkpoint.open(opts.model, opts.build);
  try {
    const plan = planRecipe(input.model, recipe);
    // params that do not fit the model's layers fail here, before any pass changes anything
    checkLayersUpFront(input.model, recipe);
    const run: CompressRun = { input: { path: input.path, sha256: input.sha256, format: input.format }, recipe, seed, plan, passes: [], warnings: [], timings: { total_ms: 0, passes_ms: 0 } };
    if (dtypes) run.folder = planModelFolder(opts.output, dtypes.dtypes, opts.model, input, modelIo(input.model), recipe, { ...opts.folder, asIs: dtypes.asIs });
    if (!opts.dryRun) await compressCheckpoint(input, outFormat, run, opts);
    run.timings.total_ms = performance.now() - t0;
    return run;
  } finally {
    input.close();
  }
}

/**
 * The passes on `input` (or on the work dir's checkpoint when resuming), the output written and
 * loaded back once, then eval or sizes. The input is closed once the output is written.
 */
async function compressCheckpoint(input: Checkpoint, outFormat: OutputFormat, run: CompressRun, opts: CompressOptions): Promise<void> {
  const { progress, output } = opts;
  const { recipe, seed } = run;
  const threads = opts.threads ?? availableParallelism();
  const evalSpec = recipe.recipe.eval;
  const work = new WorkDir<PassRecord>(output, sha256Bytes(Buffer.from([input.sha256, recipe.sha256, seed, VERSION].join('\n'))));
  const saved = opts.resume ? work.load() : undefined;
  if (opts.resume && !saved) progress.warn(`--resume: no completed pass to resume from in ${work.dir}; starting from the first pass`);
  if (!opts.resume) work.reset();
  // the original's size and IO, measured before any pass changes input.model
  const reference = !evalSpec || evalSpec.reference ? await checkpointFacts(input) : undefined;
  // the input as ONNX: the reference of eval and the teacher of distillation
  const originalOnnx = (): string => input.onnxPath(() => work.file('reference.onnx'));

  let written: string[] = [];
  let folder: WrittenFolder | undefined;
  let referenceOnnx: string | undefined;
  const resumed = saved ? work.loadCheckpoint(saved) : undefined;
  try {
    const model = resumed ?? input.model;
    if (saved) {
      run.passes = saved.passes;
      run.resumedAfter = saved.completed;
      progress.stage(`resuming after pass ${saved.completed}/${recipe.recipe.passes.length}`);
    }
    if (opts.stream) model.spillTo(work.file('spill.bin'), STREAM_THRESHOLD);
    await runPasses(model, run, saved?.completed ?? 0, work, originalOnnx, threads, opts);
    progress.stage(`writing ${output}`);
    if (run.folder) {
      let calibration: Promise<Calibrator | undefined> | undefined;
      folder = await writeModelFolder(model, run.folder, {
        seed,
        progress,
        recipe,
        io: await resolveKvShapes(model, modelIo(model), threads),
        calibration: () => (calibration ??= calibratorFor(model, recipe, threads, progress, work.file('calibration'))),
        workFile: (name) => work.file(name),
      });
    } else {
      written = outFormat === 'onnx' ? writeOnnx(model, output, { externalData: recipe.recipe.output.external_data || undefined }).files : writeModelAsSafetensors(model, output, input);
    }
    if (evalSpec?.reference) referenceOnnx = originalOnnx();
  } finally {
    resumed?.close();
    input.close();
  }

  // every model file as written (a folder's: one per dtype), loaded once for its hash, size, IO and ONNX form
  const outputs = folder ? folder.variants.map((v) => ({ path: v.path, files: v.files })) : [{ path: output, files: written }];
  const measured: { facts: CheckpointFacts; onnx?: string }[] = [];
  for (const [i, o] of outputs.entries()) {
    const compressed = Checkpoint.open(o.path, opts.build);
    try {
      measured.push({ facts: await checkpointFacts(compressed, o.files), onnx: evalSpec ? compressed.onnxPath(() => work.file(`compressed-${i}.onnx`)) : undefined });
    } finally {
      compressed.close();
    }
  }
  run.output = folder
    ? { path: output, sha256: folderSha256(folder.dir, folder.files), format: 'folder', files: folder.files }
    : { path: output, sha256: measured[0]!.facts.sha256, format: outFormat, files: written };

  const measures: { measure: Measure; fidelity?: Fidelity }[] = [];
  if (evalSpec) {
    const te = performance.now();
    progress.stage('evaluating original and compressed models');
    const data = await loadDataset(evalSpec.data, recipe.dir, { onProgress: (p) => progress.stage(`loading evaluation data: ${loadProgressText(p)}`) });
    run.dataDescription = { description: data.description, files: data.files };
    const latency = evalSpec.latency ? { runs: evalSpec.latency.runs, warmup: evalSpec.latency.warmup } : false;
    const evalOpts: EvalOptions = { threads: evalSpec.latency?.threads ?? threads, latency, dataPath: recipe.path };
    for (const [i, m] of measured.entries()) {
      if (measured.length > 1) progress.stage(`evaluating ${folder!.variants[i]!.dtype} and the original`);
      const ev = await evaluate({ ...m.facts, onnx: m.onnx! }, data, evalOpts, referenceOnnx ? { ...reference!, onnx: referenceOnnx } : undefined);
      run.evaluation ??= ev;
      measures.push({ measure: ev.model, fidelity: ev.fidelity });
    }
    run.timings.eval_ms = performance.now() - te;
  } else {
    // without eval the report still gives both sizes (evaluate passes them on when there is one)
    run.sizes = { reference: sizeMeasure(reference!), model: sizeMeasure(measured[0]!.facts) };
    measures.push(...measured.map((m) => ({ measure: sizeMeasure(m.facts) })));
  }
  if (folder) {
    run.variants = folder.variants.map((v, i) => ({ dtype: v.dtype, path: v.path, files: v.files, passes: v.passes, warnings: v.warnings, ...measures[i]! }));
    run.warnings.push(...folder.warnings, ...folder.variants.flatMap((v) => v.warnings));
  }
  work.remove();
  progress.stop();
  run.warnings.push(...run.passes.flatMap((p) => (p.warnings ?? []).map((w) => `${p.id}: ${w}`)));
}

/** Passes `start`… of the recipe on `model`, each saved to the work dir before the next. */
async function runPasses(model: Model, run: CompressRun, start: number, work: WorkDir<PassRecord>, originalOnnx: () => string, threads: number, opts: CompressOptions): Promise<void> {
  const { recipe, seed } = run;
  const progress = opts.progress;
  const calibrator = await makeCalibrator(model, recipe, start, threads, progress, work.file('calibration'));
  const tPasses = performance.now();
  const total = recipe.recipe.passes.length;
  for (let i = start; i < total; i++) {
    const entry = recipe.recipe.passes[i]!;
    const pass = entry.parsed;
    const layers = selectTargets(model, recipe, i);
    // again on the model as earlier passes left it: the up-front check stops at a pass that changes layers
    checkLayers(recipe, [{ index: i, layers }]);
    progress.pass(i, total, pass.id, layers.length);
    const tp = performance.now();
    const result = await pass.apply(model, {
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
      hooks: opts.hooks,
    });
    const ms = performance.now() - tp;
    for (const w of result.warnings) progress.warn(`${pass.id}: ${w}`);
    run.passes.push({ id: pass.id, targets: entry.targets, ignore: entry.ignore, params: entry.params, ms, layers: result.layers, warnings: result.warnings, ...(result.summary ? { summary: result.summary } : {}) });
    progress.passDone(i, total, pass.id, ms);
    if (i < total - 1) {
      work.save(model, i + 1, run.passes);
      await opts.hooks?.afterPass?.(i + 1);
    }
  }
  run.timings.passes_ms = performance.now() - tPasses;
  run.warnings.push(...(calibrator?.warnings ?? []).map((w) => `calibration: ${w}`));
}

async function makeCalibrator(model: Model, recipe: RunnableRecipe, start: number, threads: number, progress: Progress, spillDir: string): Promise<Calibrator | undefined> {
  // passes that can use calibration optionally (prune.channels) get it whenever the recipe has it
  if (start >= recipe.recipe.passes.length) return undefined;
  return calibratorFor(model, recipe, threads, progress, spillDir);
}

/** The recipe's calibration data on `model`; undefined when the recipe has none. */
async function calibratorFor(model: Model, recipe: RunnableRecipe, threads: number, progress: Progress, spillDir: string): Promise<Calibrator | undefined> {
  const cal = recipe.recipe.calibration;
  if (!cal) return undefined;
  progress.stage('loading calibration data');
  // calibration runs the first `samples` sequences; text is tokenized only that far
  const data = await loadDataset(cal.data, recipe.dir, { sequences: cal.samples, onProgress: (p) => progress.stage(`loading calibration data: ${loadProgressText(p)}`) });
  const io = await resolveKvShapes(model, modelIo(model), threads);
  return new Calibrator(calibrationFeeds(io, data, cal.samples, cal.seq_len, recipe.path), cal.mode, threads, { spillDir, onWarning: (w) => progress.warn(`calibration: ${w}`) });
}

/** A folder's hash: sha256 of its `sha256sum`-style listing (file hash, two spaces, path relative to the folder; sorted by path). */
function folderSha256(dir: string, files: string[]): string {
  const lines = files.map((f) => relative(dir, f).split(sep).join('/')).sort().map((rel) => `${sha256File(join(dir, rel))}  ${rel}\n`);
  return sha256Bytes(lines.join(''));
}

function sizeMeasure(facts: CheckpointFacts): Measure {
  return { path: facts.path, sha256: facts.sha256, size: facts.size };
}
