import { readdirSync, statSync } from 'node:fs';
import { basename, join, relative, sep } from 'node:path';
import { UserError } from '../errors.js';
import { fsReadError, INPUT_LIMITS, readInputFile } from '../util/read-file.js';
import type { ImageFolderSpec } from './spec.js';

type LabelFields = Pick<ImageFolderSpec, 'label_from' | 'label_pattern'>;

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp'];
/** "img2" before "img10" */
const byName = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

/** The images of a folder in sample order, with a class index each when the folder has labels. */
export interface LabelledImages {
  /** paths relative to the folder, '/'-separated */
  files: string[];
  labels?: Int32Array;
  /** class names by index, when they are names (sub-folders, CSV names) */
  classes?: string[];
  /** "labels from 10 sub-folders" */
  source: string;
}

/** Every file below `dir` with one of `extensions`, relative, sorted by name with numbers in numeric order. */
export function listFiles(dir: string, extensions: string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch (e) {
      throw fsReadError(d, 'image folder', e, 'path');
    }
    for (const e of entries.sort((a, b) => byName(a.name, b.name))) {
      const p = join(d, e.name);
      const isDir = e.isDirectory() || (e.isSymbolicLink() && statSync(p, { throwIfNoEntry: false })?.isDirectory());
      if (isDir) walk(p);
      else if (extensions.some((x) => e.name.toLowerCase().endsWith(x))) out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  walk(dir);
  return out;
}

/**
 * The folder's images and their labels: from class sub-folders (class names sorted; names that are
 * all integers are their own class index, so `0`…`999` are ImageNet's indices), from a CSV, from a
 * number in the file name, or none. Sub-folder classes are interleaved (the first image of every
 * class, then the second…) so that `limit` and calibration's first samples span the classes.
 */
export function labelledImages(spec: LabelFields, dir: string, csvPath: string | undefined, extensions = IMAGE_EXTENSIONS, noun = 'images'): LabelledImages {
  const files = listFiles(dir, extensions);
  if (files.length === 0) throw new UserError(`${dir}: no ${extensions.join('/')} ${noun} in the folder (field path)`);
  const hasFolders = files.some((f) => f.includes('/'));
  const from = spec.label_from ?? (csvPath ? 'csv' : hasFolders ? 'folders' : 'none');
  if (from === 'csv' && !csvPath) throw new UserError(`${dir}: label_from csv needs labels: <file.csv> (--labels)`);
  if (from !== 'csv' && csvPath) throw new UserError(`${csvPath}: a labels CSV is read only with label_from csv, not ${from} (field label_from)`);
  if (spec.label_pattern !== undefined && from !== 'filename') throw new UserError(`${dir}: label_pattern applies only to label_from filename (field label_pattern)`);
  switch (from) {
    case 'none':
      return { files, source: 'no labels' };
    case 'folders':
      return fromFolders(files, dir);
    case 'filename':
      return fromFileNames(files, spec.label_pattern, dir);
    case 'csv':
      return fromCsv(files, csvPath!, dir);
  }
}

function fromFolders(files: string[], dir: string): LabelledImages {
  const loose = files.find((f) => !f.includes('/'));
  if (loose) throw new UserError(`${dir}: ${loose} is not in a class sub-folder; move it into one, or set label_from (filename, csv or none)`);
  const byClass = new Map<string, string[]>();
  for (const f of files) {
    const c = f.slice(0, f.indexOf('/'));
    byClass.set(c, [...(byClass.get(c) ?? []), f]);
  }
  const names = [...byClass.keys()];
  const numeric = names.every((n) => /^\d+$/.test(n));
  const classes = numeric ? names.sort((a, b) => Number(a) - Number(b)) : names.sort();
  const index = (c: string) => (numeric ? Number(c) : classes.indexOf(c));
  const ordered: string[] = [];
  const labels: number[] = [];
  const queues = classes.map((c) => byClass.get(c)!);
  for (let k = 0; ordered.length < files.length; k++) {
    for (const [i, q] of queues.entries()) {
      if (k < q.length) {
        ordered.push(q[k]!);
        labels.push(index(classes[i]!));
      }
    }
  }
  return { files: ordered, labels: Int32Array.from(labels), ...(numeric ? {} : { classes }), source: `labels from ${classes.length} sub-folders${numeric ? ' (numbered: the number is the class)' : ''}` };
}

function fromFileNames(files: string[], pattern: string | undefined, dir: string): LabelledImages {
  let re: RegExp;
  try {
    re = new RegExp(pattern ?? '(\\d+)\\D*$');
  } catch (e) {
    throw new UserError(`${dir}: label_pattern is not a regular expression (${(e as Error).message})`);
  }
  const labels = files.map((f) => {
    const m = re.exec(basename(f));
    if (!m || m[1] === undefined || !/^\d+$/.test(m[1])) throw new UserError(`${dir}: file name ${f} has no class number matching label_pattern ${re.source} (its first group must capture digits)`);
    return Number(m[1]);
  });
  return { files, labels: Int32Array.from(labels), source: `labels from file names (${re.source})` };
}

function fromCsv(files: string[], csvPath: string, dir: string): LabelledImages {
  const text = readInputFile(csvPath, 'labels CSV', { maxBytes: INPUT_LIMITS.samples, field: 'labels' }).toString('utf8');
  const rows = new Map<string, string>();
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    if (line.trim() === '') continue;
    const cells = line.split(',').map((c) => c.trim().replace(/^"(.*)"$/, '$1'));
    if (i === 0 && /^(file|filename|path|image)$/i.test(cells[0]!)) continue;
    if (cells.length !== 2 || !cells[0] || !cells[1]) throw new UserError(`${csvPath}:${i + 1}: expected two columns file,label, found "${line.trim()}"`);
    rows.set(cells[0].replace(/^\.\//, ''), cells[1]);
  }
  const missing = files.filter((f) => !rows.has(f));
  if (missing.length > 0) throw new UserError(`${csvPath}: ${missing.length} image${missing.length === 1 ? '' : 's'} of ${dir} have no row, e.g. ${missing[0]}; add them or remove the files`);
  const listed = new Set(files);
  const absent = [...rows.keys()].filter((f) => !listed.has(f));
  if (absent.length > 0) throw new UserError(`${csvPath}: ${absent.length} row${absent.length === 1 ? ' names a file' : 's name files'} not in ${dir}, e.g. ${absent[0]}`);
  const values = files.map((f) => rows.get(f)!);
  if (values.every((v) => /^\d+$/.test(v))) return { files, labels: Int32Array.from(values, Number), source: `labels from ${basename(csvPath)}` };
  const classes = [...new Set(values)].sort();
  return { files, labels: Int32Array.from(values, (v) => classes.indexOf(v)), classes, source: `labels from ${basename(csvPath)} (${classes.length} class names)` };
}
