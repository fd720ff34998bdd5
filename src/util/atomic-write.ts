import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Writes go to a temp file beside the target and are renamed into place, so a killed run
 * never leaves a half-written file under the target's name.
 */
export function tempPathFor(target: string): string {
  return join(dirname(target), `.${basename(target)}.${process.pid}.${Date.now().toString(36)}.tmp`);
}

/** Temp files being written right now, so an interrupted run can remove them before it exits. */
const inFlight = new Set<string>();

export function trackTemp(path: string): void {
  inFlight.add(path);
}

export function untrackTemp(path: string): void {
  inFlight.delete(path);
}

/** Remove every temp file still being written (called from the SIGINT/SIGTERM handler). */
export function removeTempFiles(): void {
  for (const p of inFlight) rmSync(p, { force: true });
  inFlight.clear();
}

/** Write `chunks` to `target` atomically. */
export function writeFileAtomic(target: string, chunks: Uint8Array | string | (Uint8Array | string)[]): void {
  const tmp = tempPathFor(target);
  const list = Array.isArray(chunks) ? chunks : [chunks];
  let fd: number | undefined;
  trackTemp(tmp);
  try {
    mkdirSync(dirname(target), { recursive: true });
    fd = openSync(tmp, 'w');
    for (const c of list) {
      const buf = typeof c === 'string' ? Buffer.from(c, 'utf8') : c;
      let off = 0;
      while (off < buf.byteLength) off += writeSync(fd, buf, off, buf.byteLength - off);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, target);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  } finally {
    untrackTemp(tmp);
  }
}
