import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';

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
    this.fd = openSync(path, 'w+');
  }

  /** Appends `data` and returns the offset it starts at. */
  append(data: Uint8Array): number {
    const offset = this.size;
    for (let done = 0; done < data.byteLength; ) done += writeSync(this.fd, data, done, data.byteLength - done, offset + done);
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
