/**
 * src/util — layer 1 (above errors/version): small helpers with no knowledge of models.
 */
import { rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { closeQuietly, makeDirs, openForWrite, renameOver, syncAndClose, writeAllAt } from './fs-write.js';

/**
 * Writes go to a temp file beside the target and are renamed into place, so a killed run
 * never leaves a half-written file under the target's name.
 */
export function tempPathFor(target: string): string {
  return join(dirname(target), `.${basename(target)}.${process.pid}.${Date.now().toString(36)}.tmp`);
}

/** Temp files (and staging folders) being written right now, so an interrupted run can remove them before it exits. */
const inFlight = new Set<string>();

export function trackTemp(path: string): void {
  inFlight.add(path);
}

export function untrackTemp(path: string): void {
  inFlight.delete(path);
}

/** Remove every temp file and staging folder still tracked (called from the SIGINT/SIGTERM handler). */
export function removeTempFiles(): void {
  for (const p of inFlight) rmSync(p, { recursive: true, force: true });
  inFlight.clear();
}

/** Write `chunks` to `target` atomically. */
export function writeFileAtomic(target: string, chunks: Uint8Array | string | (Uint8Array | string)[]): void {
  const list = Array.isArray(chunks) ? chunks : [chunks];
  writeFileAtomicStream(target, (write) => {
    for (const c of list) write(typeof c === 'string' ? Buffer.from(c, 'utf8') : c);
  });
}

/**
 * Write `target` atomically from `produce`, which hands the file its bytes in order through
 * `write`: small chunks are gathered into 1 MiB writes, large ones go straight to the file, so a
 * large file never exists in memory as a whole. Returns the bytes written. A filesystem failure is
 * a UserError naming `target`; the temp file is removed.
 */
export function writeFileAtomicStream(target: string, produce: (write: (chunk: Uint8Array) => void) => void): number {
  const tmp = tempPathFor(target);
  let fd: number | undefined;
  trackTemp(tmp);
  try {
    makeDirs(dirname(target));
    fd = openForWrite(tmp, target);
    const out = new GatheringWriter(fd, tmp, target);
    produce((chunk) => out.write(chunk));
    out.flush();
    const done = fd;
    fd = undefined;
    syncAndClose(done, tmp, target);
    renameOver(tmp, target);
    return out.bytes;
  } catch (e) {
    closeQuietly(fd);
    rmSync(tmp, { force: true });
    throw e;
  } finally {
    untrackTemp(tmp);
  }
}

const GATHER = 2 ** 20;

class GatheringWriter {
  private readonly buffer = new Uint8Array(GATHER);
  private used = 0;
  bytes = 0;

  constructor(
    private readonly fd: number,
    private readonly path: string,
    private readonly shown: string,
  ) {}

  write(chunk: Uint8Array): void {
    this.bytes += chunk.byteLength;
    if (this.used + chunk.byteLength <= GATHER) {
      this.buffer.set(chunk, this.used);
      this.used += chunk.byteLength;
      return;
    }
    this.flush();
    if (chunk.byteLength < GATHER / 2) {
      this.buffer.set(chunk);
      this.used = chunk.byteLength;
    } else {
      writeAllAt(this.fd, chunk, null, this.path, this.shown);
    }
  }

  flush(): void {
    writeAllAt(this.fd, this.buffer.subarray(0, this.used), null, this.path, this.shown);
    this.used = 0;
  }
}
