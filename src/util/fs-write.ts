import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { asFsUserError } from './fs-errors.js';

/**
 * The filesystem calls every write path goes through (outputs, temp files, the work folder, spill
 * files). Each failure the environment causes becomes a one-line UserError naming `shown`, the
 * path the user knows (a temp file's target, not the temp file). `injectFsFault` is the test seam:
 * it fails chosen calls with a chosen errno, so each code's handling is tested where no real
 * full disk or read-only mount can be made.
 */
export type FsWriteOp = 'mkdir' | 'open' | 'write' | 'fsync' | 'rename';

/** Decides, per call, an errno code to fail with; undefined lets the call run. */
export type FsFault = (op: FsWriteOp, path: string) => string | undefined;

let fault: FsFault | undefined;

/** Installs `f` until the returned function is called (tests only). */
export function injectFsFault(f: FsFault): () => void {
  fault = f;
  return () => {
    if (fault === f) fault = undefined;
  };
}

function check(op: FsWriteOp, path: string): void {
  const code = fault?.(op, path);
  if (code === undefined) return;
  const e = new Error(`${code}: injected fault, ${op} '${path}'`) as NodeJS.ErrnoException;
  e.code = code;
  e.syscall = op;
  e.path = path;
  throw e;
}

let rename: ((path: string) => string) | undefined;

/**
 * Runs `fn` (synchronous) with failures named by `as(path)`: a file written under a staging name
 * is reported under the name the user gave it.
 */
export function namingPathsAs<T>(as: (path: string) => string, fn: () => T): T {
  const outer = rename;
  rename = (p) => (outer ? outer(as(p)) : as(p));
  try {
    return fn();
  } finally {
    rename = outer;
  }
}

function guarded<T>(op: FsWriteOp, path: string, shown: string, doing: string, fn: () => T): T {
  try {
    check(op, path);
    return fn();
  } catch (e) {
    throw asFsUserError(e, rename ? rename(shown) : shown, doing);
  }
}

/** mkdir -p; returns the first folder it created (undefined when all existed). */
export function makeDirs(path: string, shown = path): string | undefined {
  return guarded('mkdir', path, shown, 'create the folder', () => mkdirSync(path, { recursive: true }));
}

/** Opens `path` for writing, created or truncated ('w+' also reads). */
export function openForWrite(path: string, shown = path, flags: 'w' | 'w+' = 'w'): number {
  return guarded('open', path, shown, 'write', () => openSync(path, flags));
}

/** Writes all of `buf` at `position` (null: at the file's current offset). */
export function writeAllAt(fd: number, buf: Uint8Array, position: number | null, path: string, shown = path): void {
  guarded('write', path, shown, 'write', () => {
    for (let done = 0; done < buf.byteLength; ) done += writeSync(fd, buf, done, buf.byteLength - done, position === null ? null : position + done);
  });
}

/** fsync then close; the file is closed even when fsync fails. */
export function syncAndClose(fd: number, path: string, shown = path): void {
  try {
    guarded('fsync', path, shown, 'write', () => fsyncSync(fd));
  } finally {
    closeSync(fd);
  }
}

/** Closes `fd` on a failure path, where a second error would hide the first. */
export function closeQuietly(fd: number | undefined): void {
  if (fd === undefined) return;
  try {
    closeSync(fd);
  } catch {
    // the write already failed; that error is the one to report
  }
}

export function renameOver(from: string, to: string, shown = to): void {
  guarded('rename', to, shown, 'move the finished file into place', () => renameSync(from, to));
}
