import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, join, relative, sep } from 'node:path';
import type { Calibrator } from '../calibrate/calibrator.js';
import { folderConfig } from '../model/hf-config.js';
import { DTYPES, externalDataNameOf, type WebDtype } from '../model/hf-folder.js';
import type { ModelIo } from '../model/io.js';
import { linears, type LinearLayer } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { readOnnx, writeOnnx } from '../model/onnx-io.js';
import { configurePass, type ConfiguredPass } from '../pass/pass.js';
import type { PassReport } from '../report/schema.js';
import { tempPathFor, trackTemp, untrackTemp, writeFileAtomic } from '../util/atomic-write.js';
import { seededRandom } from '../util/random.js';
import { quantizationOf, type Step } from './dtype-steps.js';
import type { FolderPlan } from './folder-plan.js';
import type { RunnableRecipe } from './plan.js';
import type { Progress } from './progress.js';
import { PASSES } from './registry.js';

/**
 * `-o DIR/`, second half: the folder folder-plan.ts planned, from the base model (the recipe's
 * passes done). Each dtype's file is a conversion of the base (dtype-steps.ts); a dtype whose steps
 * extend another's continues from it (q4f16 from q4). Every file is written into the run's staging
 * folder; the moves it returns (data files before the .onnx that reads them, config.json last) are
 * made by the run's commit, together with the report, once evaluation is done, so no name in DIR
 * ever holds a partial file.
 */

export interface FolderContext {
  seed: number;
  progress: Progress;
  recipe: RunnableRecipe;
  /** the base model's inputs and outputs, KV shapes resolved */
  io: ModelIo;
  /** the recipe's calibration on the base model, made when a variant first needs it */
  calibration: () => Promise<Calibrator | undefined>;
  /** a file in the run's work dir */
  workFile: (name: string) => string;
}

export interface WrittenVariant {
  dtype: WebDtype;
  /** the variant's .onnx, where it will be */
  path: string;
  /** the .onnx and its external data, where they will be */
  files: string[];
  /** the same files in the staging folder, until the commit */
  staged: string;
  stagedFiles: string[];
  /** the passes that turned the base into this dtype */
  passes: PassReport[];
  warnings: string[];
}

export interface WrittenFolder {
  dir: string;
  files: string[];
  variants: WrittenVariant[];
  /** staged file → its place in DIR (`rel`: the path inside DIR), in commit order */
  moves: { from: string; to: string; rel: string }[];
  warnings: string[];
}

/** Writes the folder `plan` lists from `base` (left unchanged) into `staging`; see the file comment. */
export async function writeModelFolder(base: Model, plan: FolderPlan, staging: string, ctx: FolderContext): Promise<WrittenFolder> {
  const form = quantizationOf(base);
  const stepsOf = new Map(plan.variants.map((v) => [v.dtype, form.adapt(v.dtype, v.steps)]));
  const config = folderConfig(base, plan.config.values, ctx.io, plan.dir);

  const stage = join(staging, 'model-folder');
  {
    mkdirSync(join(stage, 'onnx'), { recursive: true });
    const variants: WrittenVariant[] = [];
    const external: Record<string, number> = {};
    let baseFile: string | undefined;
    // the last converted model: a variant whose steps extend its steps continues from it
    let chain: { steps: Step[]; model: Model; passes: PassReport[]; warnings: string[] } | undefined;
    // DTYPES order puts q4 before q4f16, so q4f16 is q4 plus quantize.f16
    for (const dtype of DTYPES) {
      const v = plan.variants.find((x) => x.dtype === dtype);
      if (!v) continue;
      const steps = stepsOf.get(dtype)!;
      ctx.progress.stage(`${plan.dir}: making ${v.file}`);
      let from = { model: base, passes: [] as PassReport[], warnings: [] as string[], done: 0 };
      if (steps.length > 0 && chain && isPrefix(chain.steps, steps)) {
        from = { model: chain.model, passes: [...chain.passes], warnings: [...chain.warnings], done: chain.steps.length };
      } else if (steps.length > 0) {
        chain?.model.close();
        chain = undefined;
        baseFile ??= writeBase(base, ctx.workFile('folder-base.onnx'));
        from.model = readOnnx(baseFile);
      }
      const { model, passes, warnings } = from;
      for (const [i, step] of steps.entries()) {
        if (i < from.done) continue;
        const r = await applyStep(model, step, dtype, ctx, i);
        passes.push(r.report);
        warnings.push(...r.warnings);
      }
      const name = basename(v.file);
      const written = writeOnnx(model, join(stage, v.file), { externalData: plan.externalData || undefined, externalDataName: externalDataNameOf(name) });
      if (written.files.length > 1) external[name] = 1;
      variants.push({ dtype, path: join(plan.dir, v.file), files: written.files.map((f) => join(plan.dir, relative(stage, f))), staged: written.files[0]!, stagedFiles: written.files, passes, warnings });
      if (model !== base) chain = { steps, model, passes, warnings };
    }
    chain?.model.close();

    // tokenizer, generation_config.json, config.json
    const staged: string[] = [];
    const put = (name: string, data: string | Uint8Array) => {
      writeFileAtomic(join(stage, name), data);
      staged.push(name);
    };
    if (plan.tokenizer.kind === 'llama2c') {
      put('tokenizer.json', `${JSON.stringify(plan.tokenizer.json, null, 2)}\n`);
      put('tokenizer_config.json', `${JSON.stringify(plan.tokenizer.config, null, 2)}\n`);
    } else {
      for (const f of plan.tokenizer.files) put(basename(f), readFileSync(f));
    }
    put('generation_config.json', plan.generationConfig ? readFileSync(plan.generationConfig) : `${JSON.stringify(generationConfig(config, plan), null, 2)}\n`);
    if (Object.keys(external).length) config['transformers.js_config'] = { ...(config['transformers.js_config'] as object | undefined), use_external_data_format: external };
    // the source's own bytes when nothing changed
    put('config.json', JSON.stringify(config) === JSON.stringify(plan.config.values) ? readFileSync(plan.config.path) : `${JSON.stringify(config, null, 2)}\n`);

    // into place: every variant's data, then its .onnx, then the rest, config.json last
    const stale = staleVariants(plan.dir, variants);
    const rels = [...variants.flatMap((v) => [...v.files.slice(1), v.files[0]!]).map((f) => relative(plan.dir, f)), ...staged];
    const warnings = stale.length
      ? [`${plan.dir}: ${stale.join(', ')} ${stale.length === 1 ? 'was' : 'were'} there before this run and ${stale.length === 1 ? 'is' : 'are'} not from this model; remove ${stale.length === 1 ? 'it' : 'them'}`]
      : [];
    const moves = rels.map((rel) => ({ from: join(stage, rel), to: join(plan.dir, rel), rel: rel.split(sep).join('/') }));
    return { dir: plan.dir, files: moves.map((m) => m.to), variants, moves, warnings };
  }
}

function writeBase(base: Model, path: string): string {
  writeOnnx(base, path);
  return path;
}

function isPrefix(a: readonly Step[], b: readonly Step[]): boolean {
  return a.length <= b.length && a.every((s, i) => s.pass === b[i]!.pass && JSON.stringify(s.params) === JSON.stringify(b[i]!.params));
}

/** One conversion step on `model`: its pass from the registry, on the layers it can take. */
async function applyStep(model: Model, step: Step, dtype: WebDtype, ctx: FolderContext, index: number): Promise<{ report: PassReport; warnings: string[] }> {
  const pass: ConfiguredPass = configurePass(PASSES.find((p) => p.id === step.pass)!, step.params);
  const floatOnly = step.layers === 'float';
  const candidates = linears(model).filter((l) => pass.eligible(l) && (!floatOnly || isFloatWeight(model, l)));
  const unfit = candidates.map((l) => ({ l, problems: pass.checkLayers([l]) })).filter((x) => x.problems.length > 0);
  const layers = candidates.filter((l) => !unfit.some((u) => u.l === l));
  const warnings: string[] = [];
  if (unfit.length) {
    // the pass's own reason, without the recipe advice after its ';'
    const why = unfit[0]!.problems[0]!.message.split(';')[0];
    const names = `${unfit.slice(0, 3).map((u) => u.l.name).join(', ')}${unfit.length > 3 ? ', …' : ''}`;
    warnings.push(`${dtype}: ${unfit.length} layer${unfit.length === 1 ? '' : 's'} (${names}) kept ${unfit.length === 1 ? 'its' : 'their'} weights as they were: ${why}`);
  }
  const t0 = performance.now();
  const result = await pass.apply(model, {
    layers,
    seed: ctx.seed,
    random: seededRandom(ctx.seed * 1000003 + 7919 * (DTYPES.indexOf(dtype) + 1) + index),
    calibration: pass.calibration.need === 'none' ? undefined : await ctx.calibration(),
    progress: ctx.progress,
    where: `output.dtypes ${dtype}`,
    recipeDir: ctx.recipe.dir,
    workFile: (name) => ctx.workFile(`${dtype}-${index}-${name}`),
    resume: false,
  });
  warnings.push(...result.warnings.map((w) => `${dtype}: ${step.pass}: ${w}`));
  const report: PassReport = { id: pass.id, targets: ['*'], params: pass.written, ms: performance.now() - t0, layers: result.layers, ...(result.warnings.length ? { warnings: result.warnings } : {}), ...(result.summary ? { summary: result.summary } : {}) };
  return { report, warnings };
}

/** A float32 weight read as it is stored (no DequantizeLinear or Cast in front of it). */
function isFloatWeight(model: Model, layer: LinearLayer): boolean {
  return model.initializer(layer.weight)?.data_type === 1 && !layer.weightChain.some((n) => n.op_type === 'DequantizeLinear' || n.op_type === 'Cast');
}

/** generation_config.json from config.json and the tokenizer; a llama2.c tokenizer's BOS also ends a text, as in run.c. */
function generationConfig(config: Record<string, unknown>, plan: FolderPlan): Record<string, unknown> {
  const bos = (config.bos_token_id as number | undefined) ?? plan.tokenizer.tokenizer?.bosId;
  const eos = (config.eos_token_id as number | number[] | undefined) ?? plan.tokenizer.tokenizer?.eosId;
  const out: Record<string, unknown> = {};
  if (bos !== undefined) out.bos_token_id = bos;
  if (eos !== undefined) {
    // run.c (and pare generate) stop at BOS too: it starts the next story
    const list = Array.isArray(eos) ? eos : [eos];
    out.eos_token_id = plan.tokenizer.kind === 'llama2c' && bos !== undefined && !list.includes(bos) ? [...list, bos] : eos;
  }
  if (config.pad_token_id !== undefined && config.pad_token_id !== null) out.pad_token_id = config.pad_token_id;
  return out;
}

/** Model files already in the folder that this run does not write. */
function staleVariants(dir: string, written: WrittenVariant[]): string[] {
  const onnxDir = join(dir, 'onnx');
  if (!existsSync(onnxDir)) return [];
  const ours = new Set(written.flatMap((v) => v.files.map((f) => basename(f))));
  return readdirSync(onnxDir)
    .filter((f) => /^model.*\.onnx(_data.*)?$/.test(f) && !ours.has(f))
    .map((f) => `onnx/${f}`);
}

