import { closeSync, readSync, rmSync } from 'node:fs';
import { openForWrite, writeAllAt } from './fs-write.js';

/** Reads exactly `out.byteLength` bytes at `position`; `short` makes the error when the file ends first. */
export function readFully(fd: number, out: Uint8Array, position: number, short: (read: number) => Error): Uint8Array {
  for (let done = 0; done < out.byteLength; ) {
    const n = readSync(fd, out, done, out.byteLength - done, position + done);
    if (n === 0) throw short(done);
    done += n;
  }
  return out;
}

/** An append-only scratch file: bytes go to its end and are read back by offset; remove() deletes it. */
export class SpillFile {
  private readonly fd: number;
  size = 0;

  constructor(readonly path: string) {
    this.fd = openForWrite(path, path, 'w+');
  }

  /** Appends `data` and returns the offset it starts at. */
  append(data: Uint8Array): number {
    const offset = this.size;
    writeAllAt(this.fd, data, offset, this.path);
    this.size += data.byteLength;
    return offset;
  }

  read(offset: number, length: number, what: string): Uint8Array {
    return readFully(this.fd, new Uint8Array(length), offset, () => new Error(`${this.path}: spill file ends before ${what}`));
  }

  remove(): void {
    closeSync(this.fd);
    rmSync(this.path, { force: true });
  }
}
