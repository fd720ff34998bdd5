import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, extname, join, relative } from 'node:path';
import type { Calibrator } from '../calibrate/calibrator.js';
import { llama2cToHf } from '../data/llama2c-hf.js';
import { Llama2cTokenizer } from '../data/llama2c-tokenizer.js';
import { loadTokenizer } from '../data/tokenizer.js';
import { UserError } from '../errors.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { folderConfig } from '../model/hf-config.js';
import { DTYPES, externalDataNameOf, isDirectory, onnxFileOf, readModelFolder, type WebDtype } from '../model/hf-folder.js';
import type { ModelIo } from '../model/io.js';
import { linears } from '../model/linears.js';
import type { Model } from '../model/model.js';
import { readOnnx, writeOnnx } from '../model/onnx-io.js';
import { configurePass, type ConfiguredPass } from '../pass/pass.js';
import type { PassReport } from '../report/schema.js';
import { tempPathFor, trackTemp, untrackTemp, writeFileAtomic } from '../util/atomic-write.js';
import { seededRandom } from '../util/random.js';
import type { RunnableRecipe } from './plan.js';
import type { Progress } from './progress.js';
import { PASSES } from './registry.js';
import { quantizationOf, variantSteps, type Step } from './dtype-steps.js';

/**
 * `-o DIR/`: the run's model written as a Hugging Face / transformers.js folder (hf-folder.ts has
 * the layout). planModelFolder checks everything it can before any pass runs — the dtypes and the
 * passes they need, config.json, the tokenizer, the KV cache transformers.js decodes with — and
 * lists the files; writeModelFolder turns the base model (the recipe's passes done) into one file
 * per dtype, writes every file into a staging folder inside DIR and renames them into place at the
 * end, data files before the .onnx that reads them and config.json last.
 */

export interface FolderSources {
  /** --config: config.json for an input that has none beside it */
  config?: string;
  /** --tokenizer: llama2.c tokenizer.bin (converted) or tokenizer.json (copied with its tokenizer_config.json) */
  tokenizer?: string;
  /** one file, the base model as it is (no dtype was asked for: it has the dtype the recipe makes) */
  asIs?: boolean;
}

type TokenizerSource = { kind: 'files'; files: string[] } | { kind: 'llama2c'; path: string; json: Record<string, unknown>; config: Record<string, unknown> };

export interface VariantPlan {
  dtype: WebDtype;
  /** relative to the folder: onnx/model_q4.onnx */
  file: string;
  steps: Step[];
}

export interface FolderPlan {
  dir: string;
  variants: VariantPlan[];
  externalData: boolean;
  config: { path: string; values: Record<string, unknown> };
  /** generation_config.json to copy; built from config.json and the tokenizer when absent */
  generationConfig?: string;
  tokenizer: TokenizerSource;
  /** the tokenizer's BOS/EOS, for generation_config.json */
  bosId?: number;
  eosId?: number;
  /** every file the folder will hold, relative to it (external data files only where forced) */
  files: string[];
}

/** Checks made before any pass: an impossible folder fails here, with nothing run or written. */
export function planModelFolder(dir: string, dtypes: readonly WebDtype[], modelArg: string, input: Checkpoint, io: ModelIo, recipe: RunnableRecipe, sources: FolderSources): FolderPlan {
  if (io.task === 'causal-lm' && !io.kv) {
    throw new UserError(
      `${modelArg}: transformers.js decodes with the KV cache (past_key_values.N / present.N), which this model has none of; compress the safetensors checkpoint (built with the cache) or an Optimum-style export instead`,
    );
  }
  for (const sub of ['onnx', 'config.json', 'tokenizer.json']) {
    const path = join(dir, sub);
    if (existsSync(path) && isDirectory(path) !== (sub === 'onnx')) throw new UserError(`${path}: is ${sub === 'onnx' ? 'a file' : 'a folder'} where the model folder needs ${sub === 'onnx' ? 'a folder' : 'a file'}; remove it or choose another folder`);
  }
  const inputFolder = isDirectory(modelArg) ? readModelFolder(modelArg) : undefined;
  const config = folderConfigSource(dir, modelArg, input, inputFolder, sources.config);
  const tokenizer = tokenizerSource(dir, modelArg, inputFolder, sources.tokenizer, config.values);
  const probe = tokenizer.kind === 'llama2c' ? Llama2cTokenizer.read(tokenizer.path) : tokenizerFromFiles(tokenizer.files);
  if (io.outputWidth !== undefined && probe && probe.vocabSize > io.outputWidth) {
    throw new UserError(`${sources.tokenizer ?? modelArg}: the tokenizer has ${probe.vocabSize} tokens but the model's logits have ${io.outputWidth}; pass the model's own tokenizer`);
  }
  const calibrated = recipe.recipe.calibration !== undefined;
  const variants = dtypes.map((dtype) => ({ dtype, file: onnxFileOf(dtype), steps: sources.asIs ? [] : variantSteps(dtype, calibrated, PASSES) }));
  for (const v of variants) checkVariant(v, recipe);
  const externalData = recipe.recipe.output.external_data;
  const tokenizerFiles = tokenizer.kind === 'files' ? tokenizer.files.map((f) => basename(f)) : ['tokenizer.json', 'tokenizer_config.json'];
  return {
    dir,
    variants,
    externalData,
    config,
    generationConfig: inputFolder?.generationConfig,
    tokenizer,
    bosId: probe?.bosId,
    eosId: probe?.eosId,
    files: [
      ...variants.flatMap((v) => (externalData ? [v.file, join(dirname(v.file), externalDataNameOf(basename(v.file)))] : [v.file])),
      ...tokenizerFiles,
      'generation_config.json',
      'config.json',
    ],
  };
}

/** A variant's steps must be passes this pare has, with the calibration they need, on a base that suits them. */
function checkVariant(v: VariantPlan, recipe: RunnableRecipe): void {
  for (const step of v.steps) {
    const pass = PASSES.find((p) => p.id === step.pass);
    if (!pass) throw new UserError(`output.dtypes: ${v.dtype} needs the ${step.pass} pass, which this version of pare does not have; leave ${v.dtype} out`);
    if (configurePass(pass, step.params).calibration.need === 'required' && !recipe.recipe.calibration) {
      throw new UserError(`${recipe.path}: output.dtypes ${v.dtype} runs ${step.pass}, which needs calibration data; add a calibration section to the recipe`);
    }
  }
  // what the recipe's passes will leave, told from their ids (the model itself is checked after they ran):
  // smoothquant is exact in float; cast and f16 leave 16-bit floats, which a fp16 file may hold
  const float16 = new Set(['quantize.cast', 'quantize.f16']);
  const quantizing = recipe.recipe.passes.findIndex((p) => p.pass.startsWith('quantize.') && p.pass !== 'quantize.smoothquant' && (v.dtype === 'fp32' || !float16.has(p.pass)));
  if (quantizing >= 0 && (v.dtype === 'fp32' || v.dtype === 'fp16')) {
    throw new UserError(
      `${recipe.path}: output.dtypes ${v.dtype}: passes[${quantizing}] ${recipe.recipe.passes[quantizing]!.pass} leaves quantized weights, which a ${v.dtype} file must not hold; ask for the dtype the recipe makes (q4, q8) or drop the pass`,
    );
  }
}

function folderConfigSource(dir: string, modelArg: string, input: Checkpoint, folder: ReturnType<typeof readModelFolder> | undefined, explicit: string | undefined): { path: string; values: Record<string, unknown> } {
  if (explicit) return { path: explicit, values: readJsonObject(explicit, 'model config') };
  if (folder) return { path: folder.config, values: readJsonObject(folder.config, 'model config') };
  if (input.safetensors) return { path: input.safetensors.config.path, values: input.config! };
  const beside = join(dirname(input.path), 'config.json');
  if (existsSync(beside)) return { path: beside, values: readJsonObject(beside, 'model config') };
  throw new UserError(`${dir}: a transformers.js folder needs the model's config.json (model_type, sizes); there is none beside ${modelArg}: pass --config FILE`);
}

function tokenizerSource(dir: string, modelArg: string, folder: ReturnType<typeof readModelFolder> | undefined, explicit: string | undefined, config: Record<string, unknown>): TokenizerSource {
  if (explicit) {
    const kind = loadTokenizer(explicit);
    if (kind instanceof Llama2cTokenizer) {
      const maxLength = typeof config.max_position_embeddings === 'number' ? config.max_position_embeddings : undefined;
      const hf = llama2cToHf(kind, { modelMaxLength: maxLength });
      return { kind: 'llama2c', path: explicit, json: hf.tokenizer, config: hf.config };
    }
    // a tokenizer.json travels with the files that configure it
    const companions = ['tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'chat_template.jinja'].map((f) => join(dirname(explicit), f)).filter((f) => existsSync(f));
    return { kind: 'files', files: [explicit, ...companions] };
  }
  if (folder?.tokenizerFiles.length) return { kind: 'files', files: folder.tokenizerFiles };
  throw new UserError(`${dir}: a transformers.js folder needs the tokenizer and ${modelArg} carries none; pass --tokenizer (a llama2.c tokenizer.bin or a tokenizer.json)`);
}

function tokenizerFromFiles(files: string[]): ReturnType<typeof loadTokenizer> | undefined {
  const json = files.find((f) => basename(f) === 'tokenizer.json' || extname(f) === '.json');
  return json && basename(json) !== 'tokenizer_config.json' ? loadTokenizer(json) : undefined;
}

function readJsonObject(path: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8').replace(/^\uFEFF/, ''));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`${path}: cannot read ${what} (${code === 'ENOENT' ? 'no such file' : (e as Error).message.split('\n')[0]})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UserError(`${path}: ${what} must be a JSON object`);
  return value as Record<string, unknown>;
}

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
  /** the variant's .onnx */
  path: string;
  /** the .onnx and its external data */
  files: string[];
  /** the passes that turned the base into this dtype */
  passes: PassReport[];
  warnings: string[];
}

export interface WrittenFolder {
  dir: string;
  files: string[];
  variants: WrittenVariant[];
  warnings: string[];
}

/** Writes the folder `plan` lists from `base` (left unchanged); see the file comment. */
export async function writeModelFolder(base: Model, plan: FolderPlan, ctx: FolderContext): Promise<WrittenFolder> {
  const form = quantizationOf(base);
  const stepsOf = new Map(plan.variants.map((v) => [v.dtype, form.adapt(v.dtype, v.steps)]));
  const config = folderConfig(base, plan.config.values, ctx.io, plan.dir);

  const created = !existsSync(plan.dir);
  mkdirSync(plan.dir, { recursive: true });
  const stage = tempPathFor(join(plan.dir, 'stage'));
  trackTemp(stage);
  let done = false;
  try {
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
      variants.push({ dtype, path: join(plan.dir, v.file), files: written.files.map((f) => join(plan.dir, relative(stage, f))), passes, warnings });
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
    const moves = [...variants.flatMap((v) => [...v.files.slice(1), v.files[0]!]).map((f) => relative(plan.dir, f)), ...staged];
    for (const rel of moves) {
      mkdirSync(dirname(join(plan.dir, rel)), { recursive: true });
      renameSync(join(stage, rel), join(plan.dir, rel));
    }
    const warnings = stale.length
      ? [`${plan.dir}: ${stale.join(', ')} ${stale.length === 1 ? 'was' : 'were'} there before this run and ${stale.length === 1 ? 'is' : 'are'} not from this model; remove ${stale.length === 1 ? 'it' : 'them'}`]
      : [];
    done = true;
    return { dir: plan.dir, files: moves.map((rel) => join(plan.dir, rel)), variants, warnings };
  } finally {
    rmSync(stage, { recursive: true, force: true });
    untrackTemp(stage);
    // a failed run leaves no folder it made
    if (!done && created && readdirSync(plan.dir).length === 0) rmSync(plan.dir, { recursive: true, force: true });
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
function isFloatWeight(model: Model, layer: ReturnType<typeof linears>[number]): boolean {
  return model.initializer(layer.weight)?.data_type === 1 && !layer.weightChain.some((n) => n.op_type === 'DequantizeLinear' || n.op_type === 'Cast');
}

/** generation_config.json from config.json and the tokenizer; a llama2.c tokenizer's BOS also ends a text, as in run.c. */
function generationConfig(config: Record<string, unknown>, plan: FolderPlan): Record<string, unknown> {
  const bos = (config.bos_token_id as number | undefined) ?? plan.bosId;
  const eos = (config.eos_token_id as number | number[] | undefined) ?? plan.eosId;
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

