import { closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { UserError } from '../errors.js';

/**
 * Every input file pare reads goes through here: it must be a regular file (a FIFO, a device such as
 * /dev/zero, a socket or a directory is refused before anything is read), and reads are bounded,
 * by a cap on the whole file or by the byte range the caller needs.
 */

export interface InputLimits {
  /** refuse the file when it is larger than this many bytes */
  maxBytes?: number;
  /** the spec or recipe field that named the file, for the message (`tokenizer`, `eval.data.path`) */
  field?: string;
  /** what to do about a file over maxBytes, appended to the message */
  fix?: string;
}

const MiB = 2 ** 20;

/** "1.5 MiB"; below 1 KiB the count with `byteUnit` ("900 bytes", or "900 B" in tables) */
export function formatBytes(n: number, byteUnit = 'bytes'): string {
  if (Math.abs(n) < 1024) return `${n} ${byteUnit}`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let v = Math.abs(n) / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${n < 0 ? '-' : ''}${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** "an IDX images file", "a tokenizer" */
const article = (what: string) => `${/^(?:[aeio]|IDX|ONNX)/i.test(what) ? 'an' : 'a'} ${what}`;

/** " (field tokenizer)" when a spec field named the file */
const fieldNote = (field?: string) => (field ? ` (field ${field})` : '');

/** The errno of a failed stat or open as a one-line user error naming the file. */
export function fsReadError(path: string, what: string, e: unknown, field?: string): UserError {
  const code = (e as NodeJS.ErrnoException)?.code;
  const f = fieldNote(field);
  switch (code) {
    case 'ENOENT':
      return new UserError(`${path}: no such ${what}${f}`);
    case 'ENOTDIR':
      return new UserError(`${path}: no such ${what}${f}: a folder on its path is a file`);
    case 'ELOOP':
      return new UserError(`${path}: symbolic link loop${f}; point it at the ${what} itself`);
    case 'EACCES':
    case 'EPERM':
      return new UserError(`${path}: permission denied reading the ${what}${f}; check its permissions`);
    case 'EISDIR':
      return new UserError(`${path}: is a directory, expected ${article(what)}${f}`);
    case 'EMFILE':
    case 'ENFILE':
      return new UserError(`${path}: too many open files to read the ${what}${f}; raise the limit (ulimit -n)`);
    default:
      return new UserError(`${path}: cannot read the ${what}${f} (${code ?? (e as Error)?.message ?? String(e)})`);
  }
}

function notRegular(path: string, what: string, st: Stats, field?: string): UserError {
  if (st.isDirectory()) return new UserError(`${path}: is a directory, expected ${article(what)}${fieldNote(field)}`);
  return new UserError(`${path}: is ${kindOf(st)}, expected ${article(what)}${fieldNote(field)}; pare reads only regular files`);
}

/**
 * stat() of an input, following symbolic links; a user error unless it is a regular file. Nothing
 * is opened, so a FIFO never blocks and a device is never read.
 */
export function statInput(path: string, what: string, field?: string): Stats {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    throw fsReadError(path, what, e, field);
  }
  if (!st.isFile()) throw notRegular(path, what, st, field);
  return st;
}

/**
 * Opens a regular input file for reading. O_NONBLOCK keeps a file swapped for a FIFO after the stat
 * from blocking the open; the descriptor is checked again, so what is read is what was checked.
 */
export function openInput(path: string, what: string, field?: string): { fd: number; size: number } {
  statInput(path, what, field);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw fsReadError(path, what, e, field);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw notRegular(path, what, st, field);
  }
  return { fd, size: st.size };
}

function tooLarge(path: string, what: string, size: number, limits: InputLimits): UserError {
  return new UserError(
    `${path}: ${what} of ${formatBytes(size)}${fieldNote(limits.field)} is larger than pare reads (${formatBytes(limits.maxBytes!)})${limits.fix ? `; ${limits.fix}` : ''}`,
  );
}

/** Reads `length` bytes at `position` of an open file, stopping at its end (the result may be shorter). */
function readAt(fd: number, length: number, position: number, path: string, what: string, field?: string): Buffer {
  const out = Buffer.allocUnsafe(length);
  let done = 0;
  try {
    while (done < length) {
      const n = readSync(fd, out, done, length - done, position + done);
      if (n === 0) break;
      done += n;
    }
  } catch (e) {
    throw fsReadError(path, what, e, field);
  }
  return done === length ? out : out.subarray(0, done);
}

/** Read a whole regular file of at most `limits.maxBytes` (default 2 GiB − 1, Node's largest single read). */
export function readInputFile(path: string, what = 'file', limits: InputLimits = {}): Buffer {
  const maxBytes = limits.maxBytes ?? 2 ** 31 - 1;
  const { fd, size } = openInput(path, what, limits.field);
  try {
    if (size > maxBytes) throw tooLarge(path, what, size, { ...limits, maxBytes });
    // a file that grew since the stat is read only as far as it was then
    return readAt(fd, size, 0, path, what, limits.field);
  } finally {
    closeSync(fd);
  }
}

/**
 * Read bytes [start, start + length) of a regular file, or fewer where the file ends first: what a
 * reader needs when the spec says how much (a token file's windows, the images a limit asks for).
 */
export function readInputRange(path: string, what: string, start: number, length: number, field?: string): Buffer {
  const { fd, size } = openInput(path, what, field);
  try {
    const n = Math.max(0, Math.min(length, size - start));
    return readAt(fd, n, start, path, what, field);
  } finally {
    closeSync(fd);
  }
}

/** Caps on the inputs pare reads whole; README.md ("Input limits") lists them. */
export const INPUT_LIMITS = {
  /** recipes and dataset spec files */
  yaml: MiB,
  /** llama2.c tokenizer.bin and Hugging Face tokenizer.json */
  tokenizer: 128 * MiB,
  /** a text dataset: it is held as one string (V8 strings stop at about 512 M characters) */
  text: 256 * MiB,
  /** token ids, images, IDX and .npy data read into memory (after gunzip for .gz files) */
  samples: 512 * MiB,
  /** config.json of a safetensors checkpoint and pare report files */
  json: 64 * MiB,
} as const;
