import { existsSync, readdirSync, statSync } from 'node:fs';
import { extname, join, sep } from 'node:path';
import { UserError } from '../errors.js';

/**
 * The Hugging Face / transformers.js model folder: config.json, generation_config.json, the
 * tokenizer files, and `onnx/model{suffix}.onnx` per dtype with its external data in
 * `model{suffix}.onnx_data` beside it. The suffixes and the data-file name are transformers.js
 * 4.3's (DEFAULT_DTYPE_SUFFIX_MAPPING and getExternalDataChunkNames in its model loader); a user
 * picks a file with `from_pretrained(dir, { dtype })`.
 */

export const DTYPES = ['fp32', 'fp16', 'q8', 'q4', 'q4f16'] as const;
export type WebDtype = (typeof DTYPES)[number];

const SUFFIX: Record<WebDtype, string> = { fp32: '', fp16: '_fp16', q8: '_quantized', q4: '_q4', q4f16: '_q4f16' };
/** other spellings a user may write: the file suffix transformers.js loads for q8 */
const ALIASES: Record<string, WebDtype> = { quantized: 'q8' };

/** Files a model folder's tokenizer may consist of; each one present is carried to a folder output. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'chat_template.jinja', 'tokenizer.model', 'vocab.json', 'merges.txt'];

/** `onnx/model_q4.onnx`: a dtype's model file, relative to the folder. */
export function onnxFileOf(dtype: WebDtype): string {
  return `onnx/model${SUFFIX[dtype]}.onnx`;
}

/** The external data file transformers.js fetches for `file` (a name, no folder): `model_q4.onnx_data`. */
export function externalDataNameOf(file: string): string {
  return `${file}_data`;
}

/** A list of dtypes as written (`fp32,q4`, or `quantized` for q8), checked and without repeats; `where` names the flag or field. */
export function parseDtypes(names: readonly string[], where: string): WebDtype[] {
  const out: WebDtype[] = [];
  for (const raw of names) {
    const name = raw.trim();
    const dtype = (DTYPES as readonly string[]).includes(name) ? (name as WebDtype) : ALIASES[name];
    if (!dtype) throw new UserError(`${where}: unknown dtype '${name}'; expected ${DTYPES.join(', ')} (transformers.js dtype names; 'quantized' is q8)`);
    if (!out.includes(dtype)) out.push(dtype);
  }
  if (out.length === 0) throw new UserError(`${where}: no dtype given; expected a list such as fp32,q4`);
  return out;
}

/**
 * Whether `-o path` names a model folder: a path ending in a slash, or an existing directory. A
 * name ending in a slash that also has a model extension, or an existing file named with a slash,
 * is ambiguous and refused.
 */
export function isFolderOutput(path: string): boolean {
  const slash = path.endsWith('/') || path.endsWith(sep);
  const trimmed = slash ? path.replace(/[\\/]+$/, '') : path;
  const ext = extname(trimmed).toLowerCase();
  let dir = false;
  let file = false;
  try {
    const st = statSync(trimmed);
    dir = st.isDirectory();
    file = !dir;
  } catch {
    // not there yet
  }
  if (slash && file) throw new UserError(`${path}: ends in a slash (a model folder) but is an existing file; drop the slash to write the file, or name a folder`);
  if (slash && (ext === '.onnx' || ext === '.safetensors')) {
    throw new UserError(`${path}: a folder named like a model file is ambiguous; write ${trimmed} (the file) or a folder name without ${ext}, ending in /`);
  }
  if (dir && !slash && (ext === '.onnx' || ext === '.safetensors')) {
    throw new UserError(`${path}: is a directory; name a model file, or write ${path}/ for a model folder`);
  }
  return slash || dir;
}

/** A model folder given as input: its checkpoint file and what travels with it to a folder output. */
export interface ModelFolder {
  dir: string;
  /** the fp32 checkpoint pare reads: onnx/model.onnx, else model.safetensors */
  model: string;
  /** config.json */
  config: string;
  generationConfig?: string;
  /** tokenizer files present (TOKENIZER_FILES) */
  tokenizerFiles: string[];
}

export function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Reads a Hugging Face / transformers.js folder: config.json and the fp32 model, `onnx/model.onnx`
 * (the file transformers.js loads for dtype fp32) or else `model.safetensors`. Other dtypes' files
 * are not inputs: they are conversions of that model.
 */
export function readModelFolder(dir: string): ModelFolder {
  const config = join(dir, 'config.json');
  const onnx = join(dir, onnxFileOf('fp32'));
  const safetensors = join(dir, 'model.safetensors');
  const model = existsSync(onnx) ? onnx : existsSync(safetensors) ? safetensors : undefined;
  if (!model) {
    const others = existsSync(join(dir, 'onnx')) ? readdirSync(join(dir, 'onnx')).filter((f) => f.endsWith('.onnx')) : [];
    const hint = others.length ? `; it has only ${others.map((f) => `onnx/${f}`).join(', ')}: pass one of those files itself` : '';
    throw new UserError(`${dir}: no fp32 model in the folder (expected onnx/model.onnx or model.safetensors)${hint}`);
  }
  if (!existsSync(config)) throw new UserError(`${dir}: a model folder needs its config.json`);
  const generationConfig = join(dir, 'generation_config.json');
  return {
    dir,
    model,
    config,
    generationConfig: existsSync(generationConfig) ? generationConfig : undefined,
    tokenizerFiles: TOKENIZER_FILES.map((f) => join(dir, f)).filter((f) => existsSync(f)),
  };
}

/** The checkpoint file a model argument names: a folder's fp32 model, or the path itself. */
export function modelFileOf(path: string): string {
  return isDirectory(path) ? readModelFolder(path).model : path;
}

/** A model folder's tokenizer.json, the tokenizer commands use when none is given; undefined for a file or a folder without one. */
export function folderTokenizer(path: string): string | undefined {
  const json = join(path, 'tokenizer.json');
  return isDirectory(path) && existsSync(json) ? json : undefined;
}

/** A model folder's file for `dtype` (`--dtype q4` → DIR/onnx/model_q4.onnx). */
export function folderVariant(dir: string, dtype: string): string {
  if (!isDirectory(dir)) throw new UserError(`${dir}: --dtype picks a file of a model folder; pass the folder, or the .onnx file without --dtype`);
  const file = join(dir, onnxFileOf(parseDtypes([dtype], '--dtype')[0]!));
  if (!existsSync(file)) throw new UserError(`${file}: the folder has no ${dtype} model; pare compress … -o ${dir} --dtypes ${dtype} writes one`);
  return file;
}
