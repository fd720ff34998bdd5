/**
 * src/util — layer 1 (above errors/version): small helpers with no knowledge of models.
 */
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

/** Remove every temp file (or staging folder) still being written (called from the SIGINT/SIGTERM handler). */
export function removeTempFiles(): void {
  for (const p of inFlight) rmSync(p, { force: true, recursive: true });
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
 * large file never exists in memory as a whole. Returns the bytes written.
 */
export function writeFileAtomicStream(target: string, produce: (write: (chunk: Uint8Array) => void) => void): number {
  const tmp = tempPathFor(target);
  let fd: number | undefined;
  trackTemp(tmp);
  try {
    mkdirSync(dirname(target), { recursive: true });
    fd = openSync(tmp, 'w');
    const out = new GatheringWriter(fd);
    produce((chunk) => out.write(chunk));
    out.flush();
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, target);
    return out.bytes;
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
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

  constructor(private readonly fd: number) {}

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
      writeAll(this.fd, chunk);
    }
  }

  flush(): void {
    writeAll(this.fd, this.buffer.subarray(0, this.used));
    this.used = 0;
  }
}

function writeAll(fd: number, buf: Uint8Array): void {
  let off = 0;
  while (off < buf.byteLength) off += writeSync(fd, buf, off, buf.byteLength - off);
}
