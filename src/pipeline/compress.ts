/**
 * src/pipeline — layer 13: the runner. registry.ts is the one list of passes (imported only here
 * and by the CLI); compress.ts runs a recipe on a checkpoint.
 */
import { availableParallelism } from 'node:os';
import { existsSync, realpathSync, rmSync } from 'node:fs';
import { basename, dirname, extname, join, resolve, sep } from 'node:path';
import { Calibrator } from '../calibrate/calibrator.js';
import { isFolderOutput } from '../model/hf-folder.js';
import type { StatsCache } from '../calibrate/stats-cache.js';
import { modelIo } from '../model/io.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';
import { checkRuntimeLoads } from '../runtime/load-check.js';
import { UserError } from '../errors.js';
import { checkpointFacts } from '../eval/evaluate.js';
import { unknownConfigKeys, type BuildOptions } from '../model/builders/index.js';
import { Checkpoint } from '../model/checkpoint.js';
import { formatOf } from '../model/load.js';
import type { Model } from '../model/model.js';
import { writeOnnx } from '../model/onnx-io.js';
import { upgradeOpset } from '../model/opset-upgrade.js';
import { writeModelAsSafetensors } from '../model/to-safetensors.js';
import { loadRecipe } from '../recipe/parse.js';
import { PASSES } from './registry.js';
import { expandSchedules } from './schedule.js';
import { sha256Bytes } from '../util/hash.js';
import { VERSION } from '../version.js';
import { RunInterrupted, type RunHooks } from '../pass/hooks.js';
import { OutputPlan } from '../util/output-plan.js';
import { makeDirs, namingPathsAs } from '../util/fs-write.js';
import { StagedOutputs, stagedNames } from '../util/staged-outputs.js';
import { compressReport } from './report.js';
import type { CompressRun, PassRecord } from './compress-run.js';
import { checkpointInputs, compressOutputs, recipeInputs, type ReportFile, spaceNeeds } from './run-files.js';
import { modelIdentity } from './calibration-scope.js';
import { checkLayersUpFront, planRecipe, type RunnableRecipe } from './plan.js';
import type { Progress } from './progress.js';
import { WorkDir } from './workdir.js';
import { folderDtypes, planModelFolder, type FolderSources } from './folder-plan.js';
import { writeModelFolder, type WrittenFolder } from './folder-write.js';
import { evaluateOutputs, folderSha256, measureWritten } from './measure-outputs.js';
import { makeCalibrator, runPasses } from './run-passes.js';

export interface CompressOptions {
  model: string;
  /** a recipe file, or a recipe already loaded (a sweep point) */
  recipe: string | RunnableRecipe;
  output: string;
  /** files rendered from the report, moved into place with the model (--report) */
  reports?: ReportFile[];
  /** create the missing folders of the outputs (--mkdir); without it a missing folder is refused */
  mkdir?: boolean;
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
  /** calibration statistics shared with other runs (pare sweep --cache) */
  statsCache?: StatsCache;
  /** upgrade the input's default-domain opset to this before the first pass (--opset; overrides output.opset) */
  opset?: number;
  /** a model folder's files, one per dtype (overrides the recipe's output.dtypes) */
  dtypes?: string[];
  /** config.json and tokenizer for a model folder whose input carries none */
  folder?: FolderSources;
}

export type { CompressRun, PassRecord } from './compress-run.js';

type OutputFormat = 'onnx' | 'safetensors' | 'folder';

/** The format the output path asks for, refused when the input's format cannot become it. */
function outputFormat(input: string, output: string): OutputFormat {
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

const STREAM_THRESHOLD = 16 * 1024;

/**
 * Checks every path the run reads and writes (src/util/output-plan.ts) before the first pass, runs
 * the passes, then writes the model and the report files under staging names and moves them into
 * place together once evaluation is done. A failure removes everything the run wrote; only an
 * interruption (a signal, RunInterrupted) keeps the work dir for --resume.
 */
export async function compress(opts: CompressOptions): Promise<CompressRun> {
  const t0 = performance.now();
  const progress = opts.progress;
  const outFormat = outputFormat(opts.model, opts.output);
  let recipe = typeof opts.recipe === 'string' ? loadRecipe(opts.recipe, PASSES) : opts.recipe;
  if (recipe.recipe.sweep) throw new UserError(`${recipe.path}: has a sweep: section; run it with pare sweep (pare compress runs one recipe), or remove the section`);
  const dtypes = folderDtypes(recipe, outFormat === 'folder', opts);
  const opset = opts.opset ?? recipe.recipe.output.opset;
  if (recipe.recipe.passes.length === 0 && !(dtypes && !dtypes.asIs) && opset === undefined) {
    throw new UserError(`${recipe.path}: passes is empty and no dtypes are asked for, so there is nothing to do; add a pass, or convert into a model folder (-o DIR/ with --dtypes or output.dtypes)`);
  }
  const outputs = new OutputPlan(compressOutputs(opts.output, outFormat, opts.reports ?? []), [{ path: opts.model, what: 'the input model' }, ...recipeInputs(recipe)], {
    mkdir: opts.mkdir,
  });
  const seed = opts.seed ?? 0;
  progress.stage(`loading ${opts.model}`);
  const input = Checkpoint.open(opts.model, opts.build);
  try {
    // its external data or config.json, known now that it is open
    outputs.addInputs(checkpointInputs(input));
    if (input.format === 'onnx') await checkRuntimeLoads(input.model);
    if (opset !== undefined) {
      const up = upgradeOpset(input.model, opset);
      if (up.from !== up.to) progress.stage(`upgraded from opset ${up.from} to ${up.to}`);
    }
    // a schedule's stages are known once the model's blocks are
    recipe = expandSchedules(input.model, recipe);
    const plan = planRecipe(input.model, recipe);
    // params that do not fit the model's layers fail here, before any pass changes anything
    checkLayersUpFront(input.model, recipe);
    outputs.checkSpace(spaceNeeds(input, plan, opts.output));
    const run: CompressRun = { input: { path: input.path, sha256: input.sha256, format: input.format }, recipe, seed, plan, passes: [], warnings: [], timings: { total_ms: 0, passes_ms: 0 } };
    const unknownKeys = input.config ? unknownConfigKeys(input.config) : [];
    if (unknownKeys.length) run.warnings.push(`config.json keys pare does not understand, ignored when building: ${unknownKeys.join(', ')}`);
    for (const w of run.warnings) progress.warn(w);
    if (dtypes) run.folder = planModelFolder(opts.output, dtypes.dtypes, opts.model, input, modelIo(input.model), recipe, { ...opts.folder, asIs: dtypes.asIs });
    if (!opts.dryRun) await compressCheckpoint(input, outFormat, run, opts, outputs, t0);
    run.timings.total_ms = performance.now() - t0;
    return run;
  } finally {
    input.close();
  }
}

/** The run after its checks: everything it writes is removed again when it fails, unless it was interrupted. */
async function compressCheckpoint(input: Checkpoint, outFormat: OutputFormat, run: CompressRun, opts: CompressOptions, outputs: OutputPlan, t0: number): Promise<void> {
  const work = new WorkDir<PassRecord>(opts.output, sha256Bytes(Buffer.from([input.sha256, run.recipe.sha256, run.seed, VERSION].join('\n'))));
  const staged = new StagedOutputs();
  try {
    outputs.makeFolders();
  } catch (e) {
    outputs.removeMadeFolders();
    throw e;
  }
  try {
    await passesThenOutputs(input, outFormat, run, opts, work, staged, t0);
  } catch (e) {
    staged.discard();
    if (!(e instanceof RunInterrupted)) {
      removeQuietly(() => work.remove());
      outputs.removeMadeFolders();
    }
    throw e;
  }
  // the outputs are in place: a work dir that cannot be removed is only a warning
  removeQuietly(() => work.remove(), (e) => opts.progress.warn(`could not remove the work folder ${work.dir}: ${(e as Error).message}`));
  opts.progress.stop();
}

function removeQuietly(remove: () => void, onError: (e: unknown) => void = () => {}): void {
  try {
    remove();
  } catch (e) {
    onError(e);
  }
}

/**
 * The passes on `input` (or on the work dir's checkpoint when resuming), the output written to
 * the staging folder and loaded back once, then eval or sizes, the report, and one commit that
 * moves the model, what goes beside it and the report files into place. The input is closed once
 * the output is written.
 */
async function passesThenOutputs(
  input: Checkpoint,
  outFormat: OutputFormat,
  run: CompressRun,
  opts: CompressOptions,
  work: WorkDir<PassRecord>,
  staged: StagedOutputs,
  t0: number,
): Promise<void> {
  const { progress, output } = opts;
  const { recipe } = run;
  const threads = opts.threads ?? availableParallelism();
  const evalSpec = recipe.recipe.eval;
  const saved = opts.resume ? work.load() : undefined;
  if (opts.resume && !saved) {
    const warning = `--resume: no completed pass to resume from in ${work.dir}; starting from the first pass`;
    progress.warn(warning);
    run.warnings.push(warning);
  }
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
    await runPasses(model, run, saved?.completed ?? 0, work, originalOnnx, threads, opts, modelIdentity(input));
    progress.stage(`writing ${output}`);
    const staging = work.staging();
    if (run.folder) {
      let calibration: Promise<Calibrator | undefined> | undefined;
      folder = await writeModelFolder(model, run.folder, staging, {
        seed: run.seed,
        progress,
        recipe,
        io: await resolveKvShapes(model, modelIo(model), threads),
        calibration: () => (calibration ??= makeCalibrator(model, recipe, threads, progress, work.file('calibration'), undefined).then((c) => c.calibrator)),
        workFile: (name) => work.file(name),
      });
    } else {
      const stagedModel = join(staging, basename(output));
      // a failure names the file the user asked for, not its staging name
      written = namingPathsAs(stagedNames(staging, dirname(output)), () =>
        outFormat === 'onnx' ? writeOnnx(model, stagedModel, { externalData: recipe.recipe.output.external_data || undefined }).files : writeModelAsSafetensors(model, stagedModel, input),
      );
    }
    if (evalSpec?.reference) referenceOnnx = originalOnnx();
  } finally {
    resumed?.close();
    input.close();
  }
  // what goes beside a model (external data, config.json) moves before it; a folder's config.json moves last
  let beside: string[] = [];
  if (folder) {
    for (const m of folder.moves) staged.add(m.from, m.to);
  } else {
    beside = written.slice(1).map((f) => join(dirname(output), basename(f)));
    written.slice(1).forEach((f, i) => staged.add(f, beside[i]!));
    staged.add(written[0]!, output);
  }

  // every model file as written (a folder's: one per dtype), loaded once for its hash, size, IO and ONNX form; named by its final path
  const models = folder ? folder.variants.map((v) => ({ staged: v.staged, files: v.stagedFiles, path: v.path })) : [{ staged: written[0]!, files: written, path: output }];
  const measured = await measureWritten(models, opts.build, evalSpec ? (i) => work.file(`compressed-${i}.onnx`) : undefined);
  run.output = folder
    ? { path: output, sha256: folderSha256(folder.moves), format: 'folder', files: folder.files }
    : { path: output, sha256: measured[0]!.facts.sha256, format: outFormat, files: [output, ...beside] };
  const measures = await evaluateOutputs(run, measured, folder?.variants.map((v) => v.dtype), reference, referenceOnnx, threads, progress);
  if (folder) {
    run.variants = folder.variants.map((v, i) => ({ dtype: v.dtype, path: v.path, files: v.files, passes: v.passes, warnings: v.warnings, ...measures[i]! }));
    run.warnings.push(...folder.warnings, ...folder.variants.flatMap((v) => v.warnings));
  }
  run.warnings.push(...run.passes.flatMap((p) => (p.warnings ?? []).map((w) => `${p.id}: ${w}`)));
  run.timings.total_ms = performance.now() - t0;
  const report = compressReport(run);
  run.report = report;
  for (const file of opts.reports ?? []) staged.write(file.path, file.render(report));
  // a model folder and its onnx/ are made just before the commit moves the files into them
  const made = folder ? [...new Set(folder.moves.map((m) => dirname(m.to)))].map((d) => makeDirs(d)).filter((d): d is string => d !== undefined) : [];
  try {
    staged.commit();
  } catch (e) {
    for (const d of made.reverse()) removeQuietly(() => rmSync(d, { recursive: true }));
    throw e;
  }
}

