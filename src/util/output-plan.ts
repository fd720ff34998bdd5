import { accessSync, constants, realpathSync, rmdirSync, statfsSync, statSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { UserError } from '../errors.js';
import { asFsUserError, errnoOf, fsErrorMessage } from './fs-errors.js';
import { makeDirs } from './fs-write.js';

/**
 * Every path a command will write, checked before any work starts: no output may be (or, for a
 * folder the run deletes, contain) an input or another output, compared by resolved path (`..`,
 * symlinks) and by device and inode (hard links); each output's folder must exist (or be made with
 * --mkdir), be a folder and be writable; an output must not name an existing folder; and the
 * filesystems must have room for what the run is expected to write. Every refusal is one line
 * naming both paths.
 */

export interface PlannedInput {
  path: string;
  /** for messages: "the recipe", "eval.data.tokenizer of the recipe" */
  what: string;
  /** refuse the run up front when it is missing (data files; a model is left to its loader's message) */
  mustExist?: boolean;
}

export interface PlannedOutput {
  path: string;
  /** for messages: "the report (--report)" */
  what: string;
  /** a folder the run creates, fills and deletes (the work folder); its parents are made as needed */
  folder?: boolean;
}

/** Bytes the run expects to write under an output's path. */
export interface SpaceNeed {
  path: string;
  bytes: number;
  what: string;
}

interface Identity {
  path: string;
  what: string;
  lexical: string;
  /** realpath of the longest existing prefix, with the rest appended */
  real: string;
  stats?: Stats;
}

const isMissing = (e: unknown) => errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR';

function identify(path: string, what: string): Identity {
  const lexical = resolve(path);
  let stats: Stats | undefined;
  try {
    stats = statSync(lexical);
  } catch (e) {
    if (!isMissing(e)) throw asFsUserError(e, path, `open ${what}`);
  }
  const tail: string[] = [];
  let head = lexical;
  for (;;) {
    try {
      return { path, what, lexical, real: join(realpathSync(head), ...tail), stats };
    } catch (e) {
      if (!isMissing(e)) throw asFsUserError(e, path, `open ${what}`);
      const up = dirname(head);
      if (up === head) return { path, what, lexical, real: lexical, stats };
      tail.unshift(basename(head));
      head = up;
    }
  }
}

function same(a: Identity, b: Identity): boolean {
  if (a.lexical === b.lexical || a.real === b.real) return true;
  return a.stats !== undefined && b.stats !== undefined && a.stats.dev === b.stats.dev && a.stats.ino === b.stats.ino;
}

function inside(a: Identity, folder: Identity): boolean {
  return a.lexical.startsWith(folder.lexical + sep) || a.real.startsWith(folder.real + sep);
}

/** The nearest folder on the way up from `path` that exists (or whatever exists there). */
function nearestExisting(path: string): { path: string; stats: Stats } {
  for (let p = resolve(path); ; p = dirname(p)) {
    try {
      return { path: p, stats: statSync(p) };
    } catch (e) {
      if (!isMissing(e)) throw asFsUserError(e, p, 'look up the folder');
      if (dirname(p) === p) throw new UserError(`${path}: no part of the path exists`);
    }
  }
}

function mib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

export class OutputPlan {
  private readonly outputs: (Identity & { folder: boolean })[];
  /** folders --mkdir made, deepest first, for removal when the run fails */
  private made: string[] = [];

  /** Checks everything but free space (see checkSpace); throws a one-line UserError on the first conflict. */
  constructor(
    outputs: readonly PlannedOutput[],
    inputs: readonly PlannedInput[],
    private readonly options: { mkdir?: boolean } = {},
  ) {
    this.outputs = outputs.map((o) => ({ ...identify(o.path, o.what), folder: o.folder ?? false }));
    for (const out of this.outputs) this.checkWritable(out);
    this.outputs.forEach((a, i) => this.outputs.slice(i + 1).forEach((b) => checkApart(a, b)));
    this.addInputs(inputs);
  }

  /** More inputs, known once the model is open (its external data): checked against every output. */
  addInputs(inputs: readonly PlannedInput[]): void {
    for (const input of inputs) {
      const id = identify(input.path, input.what);
      if (!id.stats && input.mustExist) throw new UserError(`${input.path}: no such file (${input.what})`);
      for (const out of this.outputs) {
        if (out.folder && (same(id, out) || inside(id, out))) {
          throw new UserError(`${input.path}: ${input.what} lies inside ${out.what} ${out.path}, which the run deletes; move it or write the output elsewhere`);
        }
        if (same(id, out)) throw new UserError(`${out.path}: ${out.what} would overwrite ${input.what} (${input.path}); pare never overwrites its inputs, choose another path`);
      }
    }
  }

  /** Refuses a run whose expected writes do not fit the free space of their filesystems. */
  checkSpace(needs: readonly SpaceNeed[]): void {
    const byDevice = new Map<number, { folder: string; bytes: number; what: string[] }>();
    for (const n of needs) {
      const at = nearestExisting(dirname(resolve(n.path)));
      const entry = byDevice.get(at.stats.dev) ?? { folder: at.path, bytes: 0, what: [] };
      entry.bytes += n.bytes;
      entry.what.push(`${n.what} ~${mib(n.bytes)}`);
      byDevice.set(at.stats.dev, entry);
    }
    for (const { folder, bytes, what } of byDevice.values()) {
      let free: number;
      try {
        const fs = statfsSync(folder);
        free = fs.bavail * fs.bsize;
      } catch {
        continue; // a filesystem that cannot tell its free space is left to the writes' own checks
      }
      if (free < bytes) {
        throw new UserError(`${folder}: ${mib(free)} free on this filesystem, the run needs about ${mib(bytes)} (${what.join(', ')}); free space or write elsewhere`);
      }
    }
  }

  /** Makes the missing folders of the file outputs (only reached with --mkdir). */
  makeFolders(): void {
    for (const out of this.outputs) {
      if (out.folder) continue;
      const dir = dirname(out.lexical);
      const first = makeDirs(dir);
      if (first === undefined) continue;
      for (let p = dir; ; p = dirname(p)) {
        this.made.push(p);
        if (p === first || dirname(p) === p) break;
      }
    }
  }

  /** Removes the folders makeFolders made, where they are empty (a failed run leaves nothing). */
  removeMadeFolders(): void {
    for (const p of this.made) {
      try {
        rmdirSync(p);
      } catch {
        // not empty (another output, or a kept work folder): leave it
      }
    }
    this.made = [];
  }

  private checkWritable(out: Identity & { folder: boolean }): void {
    if (out.stats && out.folder && !out.stats.isDirectory()) throw new UserError(`${out.path}: is a file, where ${out.what} (a folder) goes; remove or rename it`);
    if (out.stats && !out.folder && out.stats.isDirectory()) throw new UserError(`${out.path}: ${out.what} names an existing folder (EISDIR); name a file`);
    const dir = out.folder ? out.lexical : dirname(out.lexical);
    const at = nearestExisting(dir);
    if (!at.stats.isDirectory()) throw new UserError(`${out.path}: ${at.path} is a file, not a folder (ENOTDIR); fix the path of ${out.what}`);
    if (at.path !== dir && !out.folder && !this.options.mkdir) throw new UserError(`${out.path}: folder ${dirname(out.path)} does not exist; create it or pass --mkdir`);
    try {
      accessSync(at.path, constants.W_OK | constants.X_OK);
    } catch (e) {
      const code = errnoOf(e);
      if (code === undefined) throw e;
      throw new UserError(fsErrorMessage(code, out.path, `write ${out.what} in ${at.path}`));
    }
  }
}

function checkApart(a: Identity & { folder: boolean }, b: Identity & { folder: boolean }): void {
  if (same(a, b)) throw new UserError(`${b.path}: ${b.what} names the same file as ${a.what}, ${a.path}; give each its own path`);
  if (a.folder && inside(b, a)) throw new UserError(`${b.path}: ${b.what} lies inside ${a.what} ${a.path}, which the run deletes; choose another path`);
  if (b.folder && inside(a, b)) throw new UserError(`${a.path}: ${a.what} lies inside ${b.what} ${b.path}, which the run deletes; choose another path`);
}
