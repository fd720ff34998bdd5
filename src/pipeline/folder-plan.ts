import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { llama2cToHf } from '../data/llama2c-hf.js';
import { Llama2cTokenizer } from '../data/llama2c-tokenizer.js';
import { loadTokenizer, type Tokenizer } from '../data/tokenizer.js';
import { UserError } from '../errors.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { externalDataNameOf, isDirectory, onnxFileOf, parseDtypes, readModelFolder, type WebDtype } from '../model/hf-folder.js';
import type { ModelIo } from '../model/io.js';
import { configurePass } from '../pass/pass.js';
import { variantSteps, type Step } from './dtype-steps.js';
import type { RunnableRecipe } from './plan.js';
import { PASSES } from './registry.js';

/** passes under quantize.* that leave float weights (exact rewrites that prepare quantization) */
const FLOAT_EXACT = new Set(['quantize.smoothquant', 'quantize.rotate']);

/**
 * `-o DIR/`, first half: the plan of a Hugging Face / transformers.js folder (hf-folder.ts has the
 * layout), made before any pass runs. It checks everything it can — the dtypes and the passes they
 * need, config.json, the tokenizer, the KV cache transformers.js decodes with, what is already in
 * DIR — and lists the files. folder-write.ts writes them once the passes are done.
 */

export interface FolderSources {
  /** --config: config.json for an input that has none beside it */
  config?: string;
  /** --tokenizer: llama2.c tokenizer.bin (converted) or tokenizer.json (copied with its tokenizer_config.json) */
  tokenizer?: string;
  /** one file, the base model as it is (no dtype was asked for: it has the dtype the recipe makes) */
  asIs?: boolean;
}

/** tokenizer.json and its companions copied as they are, or written from a llama2.c tokenizer.bin */
export type TokenizerSource = ({ kind: 'files'; files: string[] } | { kind: 'llama2c'; path: string; json: Record<string, unknown>; config: Record<string, unknown> }) & {
  /** the tokenizer itself (absent for a folder without tokenizer.json): its size, BOS and EOS */
  tokenizer?: Tokenizer;
};

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
  /** every file the folder will hold, relative to it (external data files only where forced) */
  files: string[];
}

/**
 * The dtypes a folder output holds: --dtypes, else the recipe's output.dtypes, each made from the
 * base model by its own conversion; else one file, the base as the recipe's passes leave it, named
 * by the dtype those passes make.
 */
export function folderDtypes(recipe: RunnableRecipe, folder: boolean, opts: { output: string; dtypes?: string[]; folder?: FolderSources }): { dtypes: WebDtype[]; asIs: boolean } | undefined {
  const given = opts.dtypes ? parseDtypes(opts.dtypes, '--dtypes') : recipe.recipe.output.dtypes;
  if (!folder) {
    if (given) throw new UserError(`${opts.output}: ${opts.dtypes ? '--dtypes' : `${recipe.path}: output.dtypes`} names the files of a model folder; write -o DIR/ (a folder), or leave the dtypes out`);
    if (opts.folder?.tokenizer || opts.folder?.config) throw new UserError(`${opts.output}: --tokenizer and --config describe a model folder output; write -o DIR/ or leave them out`);
    return undefined;
  }
  return given ? { dtypes: given, asIs: false } : { dtypes: [madeByRecipe(recipe)], asIs: true };
}

/** The transformers.js dtype of the model the recipe's passes leave, told from their ids and bits. */
function madeByRecipe(recipe: RunnableRecipe): WebDtype {
  const quantizers = recipe.recipe.passes.filter((p) => p.pass.startsWith('quantize.') && !FLOAT_EXACT.has(p.pass));
  const half = quantizers.some((p) => p.pass === 'quantize.cast' || p.pass === 'quantize.f16');
  const bits = quantizers.filter((p) => typeof p.params.bits === 'number').map((p) => p.params.bits as number);
  if (bits.some((b) => b <= 4)) return quantizers.some((p) => p.pass === 'quantize.f16') ? 'q4f16' : 'q4';
  if (bits.includes(8) || quantizers.some((p) => p.pass === 'quantize.w8a8')) return 'q8';
  return half ? 'fp16' : 'fp32';
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
  const probe = tokenizer.tokenizer;
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
  // smoothquant and rotate are exact in float; cast and f16 leave 16-bit floats, which a fp16 file may hold
  const float16 = new Set(['quantize.cast', 'quantize.f16']);
  const quantizing = recipe.recipe.passes.findIndex((p) => p.pass.startsWith('quantize.') && !FLOAT_EXACT.has(p.pass) && (v.dtype === 'fp32' || !float16.has(p.pass)));
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
    const tokenizer = loadTokenizer(explicit);
    if (tokenizer instanceof Llama2cTokenizer) {
      const maxLength = typeof config.max_position_embeddings === 'number' ? config.max_position_embeddings : undefined;
      const hf = llama2cToHf(tokenizer, { modelMaxLength: maxLength });
      return { kind: 'llama2c', path: explicit, json: hf.tokenizer, config: hf.config, tokenizer };
    }
    // a tokenizer.json travels with the files that configure it
    const companions = ['tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'chat_template.jinja'].map((f) => join(dirname(explicit), f)).filter((f) => existsSync(f));
    return { kind: 'files', files: [explicit, ...companions], tokenizer };
  }
  if (folder?.tokenizerFiles.length) {
    const json = folder.tokenizerFiles.find((f) => basename(f) === 'tokenizer.json');
    return { kind: 'files', files: folder.tokenizerFiles, tokenizer: json ? loadTokenizer(json) : undefined };
  }
  throw new UserError(`${dir}: a transformers.js folder needs the tokenizer and ${modelArg} carries none; pass --tokenizer (a llama2.c tokenizer.bin or a tokenizer.json)`);
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
