import { existsSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { INPUT_LIMITS, readInputFile } from '../util/read-file.js';
import { parseYamlBounded, YamlError } from '../util/yaml.js';
import { IMAGE_EXTENSIONS, listFiles } from './image-labels.js';
import { DatasetSpec } from './spec.js';

export interface DataFlags {
  tokenizer?: string;
  seqLen?: number;
  count?: number;
  maxLength?: number;
  select?: string;
  labels?: string;
  labelsDtype?: 'uint8' | 'uint16' | 'int32';
  /** .npy data: regression targets */
  targets?: string;
  shape?: number[];
  layout?: 'nhwc' | 'nchw';
  scale?: number;
  mean?: number[];
  std?: number[];
  limit?: number;
  /** image folders only */
  preset?: string;
  resize?: number;
  crop?: number[];
  color?: string;
  labelFrom?: string;
  labelPattern?: string;
  /** WAV folders: logmel, mfcc or waveform */
  features?: string;
}

const FOLDER_FLAGS = ['preset', 'resize', 'crop', 'color', 'labelFrom', 'labelPattern'] as const;

/**
 * `--data` plus flags → a dataset spec. A .yaml/.json argument is a spec file (paths in it resolve
 * against its folder); otherwise the kind follows the file: .txt is text (needs --tokenizer),
 * *-idx3-ubyte[.gz] is IDX (the matching idx1 labels file beside it is found), .npy is NumPy, and a
 * .bin is token ids with --seq-len or raw uint8 images with --shape; a folder is JPEG/PNG/WebP images (or WAV clips, when it holds only those).
 */
export function datasetSpecFromCli(arg: string, flags: DataFlags, cwd: string): { spec: DatasetSpec; baseDir: string } {
  const path = resolve(cwd, arg);
  const ext = extname(path).toLowerCase();
  if (ext === '.yaml' || ext === '.yml' || ext === '.json') {
    let raw: unknown;
    try {
      raw = parseYamlBounded(readInputFile(path, 'dataset spec', { maxBytes: INPUT_LIMITS.yaml, fix: 'a dataset spec is a short YAML file' }).toString('utf8'), arg).data;
    } catch (e) {
      if (!(e instanceof YamlError)) throw e;
      const first = e.issues[0]!;
      throw new UserError(`${arg}:${first.line}:${first.col} not a readable dataset spec (${first.message})`);
    }
    const given = Object.entries(flags).filter(([, v]) => v !== undefined).map(([k]) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
    if (given.length > 0) throw new UserError(`${arg}: ${given.join(', ')} cannot be combined with a dataset spec file; set the field in the file instead`);
    return { spec: validate(raw, arg), baseDir: dirname(path) };
  }
  if (arg.startsWith('random:')) {
    // random:uniform, random:normal
    const raw = { kind: 'random', distribution: arg.slice('random:'.length), shape: flags.shape, count: flags.count, layout: flags.layout };
    if (!flags.shape) throw new UserError(`${arg}: random data needs --shape (per sample, e.g. 3x224x224)`);
    return { spec: validate(Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined)), arg), baseDir: cwd };
  }
  if (isFolder(path) && listFiles(path, ['.wav']).length > 0 && listFiles(path, IMAGE_EXTENSIONS).length === 0) {
    const imageOnly = (['preset', 'resize', 'crop', 'color'] as const).filter((k) => flags[k] !== undefined).map((k) => `--${k}`);
    if (imageOnly.length > 0) throw new UserError(`${arg}: ${imageOnly.join(', ')} apply to images; this folder holds WAV files`);
    const raw = { kind: 'wav-folder', path, label_from: flags.labelFrom, label_pattern: flags.labelPattern, features: flags.features, limit: flags.limit };
    return { spec: validate(Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined)), arg), baseDir: cwd };
  }
  if (flags.features !== undefined) throw new UserError(`${arg}: --features applies only to a folder of WAV files`);
  if (isFolder(path)) {
    const raw = {
      kind: 'image-folder',
      path,
      labels: flags.labels && resolve(cwd, flags.labels),
      targets: flags.targets && resolve(cwd, flags.targets),
      label_from: flags.labelFrom,
      label_pattern: flags.labelPattern,
      preset: flags.preset,
      color: flags.color,
      resize: flags.resize,
      crop: flags.crop?.length === 1 ? flags.crop[0] : flags.crop,
      layout: flags.layout,
      scale: flags.scale,
      mean: flags.mean,
      std: flags.std,
      limit: flags.limit,
    };
    return { spec: validate(Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined)), arg), baseDir: cwd };
  }
  const folderOnly = FOLDER_FLAGS.filter((k) => flags[k] !== undefined).map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
  if (folderOnly.length > 0) throw new UserError(`${arg}: ${folderOnly.join(', ')} apply only to a folder of images; this is a file`);
  const norm = { scale: flags.scale ?? 1, mean: flags.mean, std: flags.std, limit: flags.limit };
  if (flags.targets && ext !== '.npy') throw new UserError(`${arg}: --targets applies only to .npy data and image folders`);
  const need = (what: string, flag: string) => new UserError(`${arg}: ${what} data needs ${flag}`);
  let raw: Record<string, unknown>;
  if (ext === '.txt') {
    if (!flags.tokenizer) throw need('text', '--tokenizer <tokenizer.bin|tokenizer.json>');
    raw = { kind: 'text', path, tokenizer: resolve(cwd, flags.tokenizer), max_length: flags.maxLength, select: flags.select };
  } else if (/idx3-ubyte(\.gz)?$/.test(path)) {
    const labels = flags.labels ? resolve(cwd, flags.labels) : labelsBeside(path);
    raw = { kind: 'idx', images: path, labels, ...norm };
  } else if (ext === '.npy') {
    raw = { kind: 'npy', path, labels: flags.labels && resolve(cwd, flags.labels), labels_dtype: flags.labelsDtype, targets: flags.targets && resolve(cwd, flags.targets), layout: flags.layout, ...norm };
  } else if (flags.shape && flags.seqLen) {
    throw new UserError(`${arg}: give --shape (raw images) or --seq-len (token ids), not both`);
  } else if (flags.shape) {
    raw = { kind: 'images', path, shape: flags.shape, layout: flags.layout, labels: flags.labels && resolve(cwd, flags.labels), labels_dtype: flags.labelsDtype, ...norm };
  } else if (flags.seqLen) {
    raw = { kind: 'tokens', path, seq_len: flags.seqLen, count: flags.count, dtype: /u32/i.test(basename(path)) ? 'uint32' : 'uint16' };
  } else {
    const hint = /\.(u16|u32)(\.bin)?$/.test(path) ? 'token ids need --seq-len <n>' : 'give --seq-len <n> for token ids, --shape HxWxC for raw uint8 images, or a dataset spec .yaml';
    throw new UserError(`${arg}: cannot tell what this data is; ${hint}`);
  }
  const clean = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined));
  return { spec: validate(clean, arg), baseDir: cwd };
}

function isFolder(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

/** Every schema issue at once, by field path, on one line: `eval.yaml: seq_len: expected number…; kind: …`. */
function validate(raw: unknown, where: string): DatasetSpec {
  const r = DatasetSpec.safeParse(raw);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`);
  throw new UserError(`${where}: ${issues.join('; ')}`);
}

/** The idx1 labels file beside an idx3 images file: images→labels, idx3→idx1, gzipped or not. */
function labelsBeside(imagesPath: string): string | undefined {
  const name = basename(imagesPath).replace('images', 'labels').replace('idx3', 'idx1');
  const bare = name.replace(/\.gz$/, '');
  return [name, bare, `${bare}.gz`].map((n) => join(dirname(imagesPath), n)).find((p) => p !== imagesPath && existsSync(p));
}
