import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ort } from '../runtime/ort.js';
import { withFsErrors } from '../util/fs-errors.js';
import { makeDirs } from '../util/fs-write.js';
import { SpillFile } from '../util/spill-file.js';

type TensorData = ort.Tensor['data'];

interface Sample {
  type: ort.Tensor.Type;
  dims: readonly number[];
  /** resident copy, or where the bytes sit in the entry's spill file */
  data?: TensorData;
  offset?: number;
  bytes: number;
  /** read for the last time and freed (release) */
  released?: boolean;
  /** the same bytes as the sample before it, whose storage it shares (not counted again) */
  shared?: boolean;
}

interface Entry {
  samples: Sample[];
  file?: SpillFile;
  /** the bytes last put, to find a sample equal to the one before it */
  last?: Uint8Array;
}

/** 256 MiB: a MobileLLM-125M hidden state for 32 × 512 tokens is 37.7 MB, so a few of them stay resident. */
export const DEFAULT_RESIDENT_BYTES = 256 * 2 ** 20;

/**
 * `--stream` trades disk for memory: boundary values past 16 MiB go to the spill file, each written
 * once and read back once per step that reads it (MobileLLM-125M at 32 × 512: about 75 MB each way
 * per block).
 */
export const STREAM_RESIDENT_BYTES = 16 * 2 ** 20;

/**
 * Values that cross a block boundary during sequential calibration, one tensor per calibration
 * sample, keyed by value name. Policy: samples stay in memory while the store's resident bytes
 * remain under `residentBytes`; a sample that would pass it is appended to a temp file of its value
 * (under `spillDir`, default os.tmpdir()) and read back with pread when asked for. Deleting a value
 * frees its memory and removes its file.
 */
export class BoundaryStore {
  private readonly entries = new Map<string, Entry>();
  private resident = 0;
  private dir: string | undefined;
  private files = 0;
  /** bytes written to spill files so far (for reports and tests) */
  spilledBytes = 0;
  /** the most bytes held in memory at once so far */
  peakResidentBytes = 0;

  constructor(
    private readonly residentBytes = DEFAULT_RESIDENT_BYTES,
    private readonly spillDir = tmpdir(),
  ) {}

  has(name: string): boolean {
    return this.entries.has(name);
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  residentSize(): number {
    return this.resident;
  }

  put(name: string, sample: number, t: ort.Tensor): void {
    let e = this.entries.get(name);
    if (!e) this.entries.set(name, (e = { samples: [] }));
    const data = t.data;
    if (typeof data[0] === 'string' || !ArrayBuffer.isView(data)) throw new Error(`calibration cache: '${name}' holds ${t.type} values, which cannot cross a block boundary`);
    const view = data as Exclude<TensorData, string[]>;
    const bytes = view.byteLength;
    const raw = new Uint8Array(view.buffer, view.byteOffset, bytes);
    // a value that does not vary between samples (the attention mask, RoPE tables of equal-length samples) is kept once
    const before = e.samples[sample - 1];
    const last = e.last;
    e.last = raw;
    if (before && !before.released && last && before.type === t.type && sameDims(before.dims, t.dims) && Buffer.compare(last, raw) === 0) {
      e.samples[sample] = { ...before, shared: true };
      return;
    }
    if (this.resident + bytes <= this.residentBytes) {
      e.samples[sample] = { type: t.type, dims: [...t.dims], data: view, bytes };
      this.resident += bytes;
      this.peakResidentBytes = Math.max(this.peakResidentBytes, this.resident);
      return;
    }
    const offset = (e.file ??= this.openSpill()).append(raw);
    e.samples[sample] = { type: t.type, dims: [...t.dims], offset, bytes };
    this.spilledBytes += bytes;
  }

  get(name: string, sample: number): ort.Tensor {
    const e = this.entries.get(name);
    const s = e?.samples[sample];
    if (!e || !s) throw new Error(`calibration cache: no value '${name}' for sample ${sample}`);
    if (s.released) throw new Error(`calibration cache: '${name}' of sample ${sample} was released after its last read`);
    if (s.data) return new ort.Tensor(s.type, s.data as never, s.dims);
    const raw = e.file!.read(s.offset!, s.bytes, `'${name}' of sample ${sample}`);
    return new ort.Tensor(s.type, typedView(s.type, raw) as never, s.dims);
  }

  /**
   * Frees one sample's memory after its last read (a spilled sample stays in its file until the value is
   * deleted): a step that reads a value for the last time frees it sample by sample while it stores the
   * value it computes, so the two are not both held whole.
   */
  release(name: string, sample: number): void {
    const samples = this.entries.get(name)?.samples;
    const s = samples?.[sample];
    if (!s || s.released) return;
    const next = samples![sample + 1];
    // the owner of bytes the next sample shares hands them over, still counted
    if (!s.shared && next?.shared && !next.released) next.shared = false;
    else if (s.data && !s.shared) this.resident -= s.bytes;
    s.data = undefined;
    s.released = true;
  }

  delete(name: string): void {
    const e = this.entries.get(name);
    if (!e) return;
    for (const s of e.samples) if (s?.data && !s.shared) this.resident -= s.bytes;
    e.file?.remove();
    this.entries.delete(name);
  }

  close(): void {
    for (const name of this.names()) this.delete(name);
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }

  private openSpill(): SpillFile {
    if (!this.dir) {
      makeDirs(this.spillDir);
      this.dir = withFsErrors(this.spillDir, 'create a calibration spill folder', () => mkdtempSync(join(this.spillDir, 'pare-calib-')));
    }
    return new SpillFile(join(this.dir, `boundary-${this.files++}.bin`));
  }
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function typedView(type: ort.Tensor.Type, raw: Uint8Array): ArrayBufferView {
  const b = raw.buffer;
  switch (type) {
    case 'float32':
      return new Float32Array(b);
    case 'float64':
      return new Float64Array(b);
    case 'int64':
      return new BigInt64Array(b);
    case 'uint64':
      return new BigUint64Array(b);
    case 'int32':
      return new Int32Array(b);
    case 'uint32':
      return new Uint32Array(b);
    case 'int16':
      return new Int16Array(b);
    case 'uint16':
    case 'float16':
      return new Uint16Array(b);
    case 'int8':
      return new Int8Array(b);
    case 'uint8':
    case 'bool':
      return raw;
    default:
      throw new Error(`calibration cache: cannot restore a ${type} tensor`);
  }
}
