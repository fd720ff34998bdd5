import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { canonicalJson } from '../util/canonical-json.js';
import { sha256Bytes } from '../util/hash.js';
import type { InputStats, StatsNeeds } from './stats.js';

/**
 * A content-addressed cache of calibration statistics on disk, shared by runs and processes (a
 * sweep's points, a CI matrix's shards on one volume). An entry is one statistic of one activation
 * tensor (XᵀX, max |x|, Σx² or Σx) under a key that pins everything it depends on: the caller's scope
 * (model, calibration data, the passes before, mode) plus tensor and kind. The file name is the
 * key's sha256.
 *
 * Entry file: one JSON header line { format, key, tensor, kind, dim, rows, dtype, length, sha256 }
 * then the values' raw little-endian bytes. Writers write a temp file and rename it, so a reader
 * sees a whole entry or none; two processes writing the same key write the same bytes. Readers
 * check the header's key and the payload's sha256: an entry that fails (truncated, edited, another
 * format) is recomputed with a warning and overwritten, never used.
 */

export type StatKind = 'xtx' | 'absmax' | 'sqnorm' | 'sum';

export interface CacheCounts {
  /** statistics served from the cache */
  hits: number;
  /** statistics computed because no entry existed (or it was unreadable) */
  misses: number;
  /** entries found but not trusted: recomputed, with a warning */
  unreadable: number;
}

const FORMAT = 'pare.stats/1';

/** The kinds of statistic `needs` asks for. */
export function statKinds(needs: StatsNeeds): StatKind[] {
  return [...(needs.hessian ? (['xtx'] as const) : []), ...(needs.absmax ? (['absmax'] as const) : []), ...(needs.sqnorm ? (['sqnorm'] as const) : []), ...(needs.sum ? (['sum'] as const) : [])];
}

interface Header {
  format: string;
  key: string;
  tensor: string;
  kind: StatKind;
  dim: number;
  rows: number;
  dtype: 'float64' | 'float32';
  length: number;
  sha256: string;
}

export class StatsCache {
  readonly counts: CacheCounts = { hits: 0, misses: 0, unreadable: 0 };
  /** what went to onWarning, for the run's report */
  readonly warnings: string[] = [];
  private writeFailed = false;

  constructor(
    readonly dir: string,
    private readonly onWarning: (message: string) => void,
  ) {
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new UserError(`--cache ${dir}: cannot create the cache folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); pass a writable folder`);
    }
  }

  /**
   * The statistics of `tensor` that `needs` asks for, when every one of them is in the cache under
   * `scope`; undefined otherwise (the caller computes them and calls `put`).
   */
  get(scope: string, tensor: string, needs: StatsNeeds): InputStats | undefined {
    const kinds = statKinds(needs);
    const found = kinds.map((kind) => this.read(scope, tensor, kind));
    if (found.some((f) => f === undefined)) {
      this.counts.misses += kinds.length;
      return undefined;
    }
    this.counts.hits += kinds.length;
    const first = found[0]!;
    const stats: InputStats = { tensor, dim: first.header.dim, rows: first.header.rows };
    for (const { header, values } of found as { header: Header; values: Float64Array | Float32Array }[]) {
      if (header.kind === 'xtx') stats.xtx = values as Float64Array;
      else if (header.kind === 'absmax') stats.absmax = values as Float32Array;
      else if (header.kind === 'sqnorm') stats.sqnorm = values as Float64Array;
      else stats.sum = values as Float64Array;
    }
    return stats;
  }

  put(scope: string, stats: InputStats): void {
    const entries: [StatKind, Float64Array | Float32Array | undefined][] = [['xtx', stats.xtx], ['absmax', stats.absmax], ['sqnorm', stats.sqnorm], ['sum', stats.sum]];
    for (const [kind, values] of entries) {
      if (!values) continue;
      const payload = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
      const header: Header = {
        format: FORMAT,
        key: entryKey(scope, stats.tensor, kind),
        tensor: stats.tensor,
        kind,
        dim: stats.dim,
        rows: stats.rows,
        dtype: values instanceof Float64Array ? 'float64' : 'float32',
        length: values.length,
        sha256: sha256Bytes(payload),
      };
      try {
        writeFileAtomic(this.path(header.key), [`${JSON.stringify(header)}\n`, payload]);
      } catch (e) {
        if (this.writeFailed) continue;
        this.writeFailed = true;
        this.warn(`cannot write to ${this.dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); statistics are computed but not shared`);
      }
    }
  }

  private path(key: string): string {
    return join(this.dir, `${sha256Bytes(key)}.stats`);
  }

  private read(scope: string, tensor: string, kind: StatKind): { header: Header; values: Float64Array | Float32Array } | undefined {
    const key = entryKey(scope, tensor, kind);
    const path = this.path(key);
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      return this.untrusted(path, `cannot read it: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const newline = bytes.indexOf(0x0a);
    let header: Header;
    try {
      if (newline < 0) throw new Error('no header line');
      header = JSON.parse(bytes.subarray(0, newline).toString('utf8')) as Header;
    } catch (e) {
      return this.untrusted(path, `header is not JSON: ${(e as Error).message}`);
    }
    if (header.format !== FORMAT) return this.untrusted(path, `format ${JSON.stringify(header.format)}, expected ${FORMAT}`);
    if (header.key !== key) return this.untrusted(path, 'its key does not match its name');
    const width = header.dtype === 'float64' ? 8 : header.dtype === 'float32' ? 4 : 0;
    const payload = bytes.subarray(newline + 1);
    if (width === 0 || payload.byteLength !== header.length * width) return this.untrusted(path, `payload is ${payload.byteLength} bytes, the header says ${header.length} ${header.dtype} values`);
    if (sha256Bytes(payload) !== header.sha256) return this.untrusted(path, 'checksum mismatch');
    // copy into an aligned buffer of its own (the payload sits at an arbitrary offset)
    const aligned = new Uint8Array(payload.byteLength);
    aligned.set(payload);
    const values = header.dtype === 'float64' ? new Float64Array(aligned.buffer) : new Float32Array(aligned.buffer);
    return { header, values };
  }

  private untrusted(path: string, why: string): undefined {
    this.counts.unreadable++;
    this.warn(`entry ${path} is unreadable (${why}); recomputing it`);
    return undefined;
  }

  private warn(message: string): void {
    this.warnings.push(message);
    this.onWarning(`calibration cache: ${message}`);
  }
}

function entryKey(scope: string, tensor: string, kind: StatKind): string {
  return canonicalJson({ scope, tensor, kind });
}
