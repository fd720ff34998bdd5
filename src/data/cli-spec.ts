import { existsSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { UserError } from '../errors.js';
import { readInputFile } from '../model/onnx-io.js';
import { DatasetSpec } from './spec.js';

export interface DataFlags {
  tokenizer?: string;
  seqLen?: number;
  count?: number;
  maxLength?: number;
  select?: string;
  labels?: string;
  shape?: number[];
  layout?: 'nhwc' | 'nchw';
  scale?: number;
  limit?: number;
}

/**
 * `--data` plus flags → a dataset spec. A .yaml/.json argument is a spec file (paths in it resolve
 * against its folder); otherwise the kind follows the file: .txt is text (needs --tokenizer),
 * *-idx3-ubyte[.gz] is IDX (the matching idx1 labels file beside it is found), .npy is NumPy, and a
 * .bin is token ids with --seq-len or raw uint8 images with --shape.
 */
export function datasetSpecFromCli(arg: string, flags: DataFlags, cwd: string): { spec: DatasetSpec; baseDir: string } {
  const path = resolve(cwd, arg);
  const ext = extname(path).toLowerCase();
  if (ext === '.yaml' || ext === '.yml' || ext === '.json') {
    let raw: unknown;
    try {
      raw = parseYaml(readInputFile(path, 'dataset spec').toString('utf8'));
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new UserError(`${arg}: not a readable dataset spec (${(e as Error).message.split('\n')[0]})`);
    }
    const r = DatasetSpec.safeParse(raw);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      throw new UserError(`${arg}: ${issue.path.join('.') || '(top level)'}: ${issue.message}`);
    }
    return { spec: r.data, baseDir: dirname(path) };
  }
  const norm = { scale: flags.scale ?? 1, limit: flags.limit };
  const need = (what: string, flag: string) => new UserError(`${arg}: ${what} data needs ${flag}`);
  let raw: Record<string, unknown>;
  if (ext === '.txt') {
    if (!flags.tokenizer) throw need('text', '--tokenizer <tokenizer.bin|tokenizer.json>');
    raw = { kind: 'text', path, tokenizer: resolve(cwd, flags.tokenizer), max_length: flags.maxLength, select: flags.select };
  } else if (/idx3-ubyte(\.gz)?$/.test(path)) {
    const guess = join(dirname(path), basename(path).replace('images-idx3', 'labels-idx1'));
    const labels = flags.labels ? resolve(cwd, flags.labels) : existsSync(guess) ? guess : undefined;
    raw = { kind: 'idx', images: path, labels, ...norm };
  } else if (ext === '.npy') {
    raw = { kind: 'npy', path, labels: flags.labels && resolve(cwd, flags.labels), layout: flags.layout, ...norm };
  } else if (flags.shape) {
    raw = { kind: 'images', path, shape: flags.shape, layout: flags.layout, labels: flags.labels && resolve(cwd, flags.labels), ...norm };
  } else if (flags.seqLen) {
    raw = { kind: 'tokens', path, seq_len: flags.seqLen, count: flags.count, dtype: /u32/.test(path) ? 'uint32' : 'uint16' };
  } else {
    throw new UserError(`${arg}: cannot tell what this data is; give a dataset spec .yaml, or --seq-len for token ids, or --shape HxWxC for raw images`);
  }
  const clean = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined));
  const r = DatasetSpec.safeParse(clean);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new UserError(`${arg}: ${issue.path.join('.')}: ${issue.message}`);
  }
  return { spec: r.data, baseDir: cwd };
}
