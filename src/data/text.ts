import { basename } from 'node:path';
import { UserError } from '../errors.js';
import { INPUT_LIMITS, readInputFile } from '../util/read-file.js';
import { sha256File } from '../util/hash.js';
import { reportEverySecond } from '../util/throttle.js';
import { parseSelection } from './selection.js';
import type { TextSpec } from './spec.js';
import { loadTokenizer } from './tokenizer.js';
import type { LoadOptions, TokenDataset } from './types.js';

/**
 * Text split into documents on `separator`, each trimmed (the TinyStories files put a newline on
 * both sides of `<|endoftext|>`; trimming is what reproduces the stories260K baseline), empty ones
 * dropped, then `select`ed (1-based). Each document is encoded on its own, BOS first when asked
 * (as llama2.c's TinyStories pretokenization does).
 *
 * Evaluation (default): one sequence per document, truncated to `max_length` tokens (BOS
 * included); the tokens past it are not scored. A sequence of n tokens scores n − 1 predictions.
 *
 * Strided windows (`stride`, below `max_length`): a document longer than `max_length` becomes
 * windows [k·stride, k·stride + max_length), the last one ending at the document's end. Window 0
 * scores all its predictions; window k scores only the tokens the previous window did not reach
 * (its `scoreFrom` is the local position predicting the first new token), earlier positions are
 * context only. So every token after the first is predicted exactly once, with at least
 * max_length − stride tokens of context once past the first window; only window 0 starts at BOS.
 *
 * Calibration (`segment`): the encoded documents (each with its BOS) are concatenated and cut into
 * segments of exactly `segment` tokens; the remainder is dropped.
 *
 * Documents are encoded one at a time in selection order, and with `opts.sequences` only until that
 * many sequences exist, so the sequences that come out are the first ones a full load gives.
 */
export function loadText(spec: TextSpec, path: string, tokenizerPath: string, opts: LoadOptions = {}): TokenDataset {
  const text = readInputFile(path, 'text file', { maxBytes: INPUT_LIMITS.text, field: 'path', fix: 'split it into smaller files' }).toString('utf8');
  const tokenizer = loadTokenizer(tokenizerPath);
  let docs = text.split(spec.separator).map((d) => d.trim()).filter((d) => d.length > 0);
  if (docs.length === 0) throw new UserError(`${path}: no documents found (separator ${JSON.stringify(spec.separator)})`);
  if (spec.select) docs = parseSelection(spec.select, docs.length, path).map((i) => docs[i]!);
  if (spec.stride !== undefined && spec.stride >= spec.max_length) {
    throw new UserError(`${path}: stride ${spec.stride} must be below max_length ${spec.max_length}, or windows would skip tokens (field stride)`);
  }
  const bos = spec.bos && tokenizer.bosId !== undefined;
  const cut = spec.segment ? new Segments(spec.segment) : new Windows(spec.max_length, spec.stride);
  const wanted = opts.sequences ?? Infinity;
  const totalBytes = docs.reduce((a, d) => a + Buffer.byteLength(d), 0);
  const tick = reportEverySecond(opts.onProgress, opts.now);
  let used = 0;
  let bytes = 0;
  while (used < docs.length && cut.sequences.length < wanted) {
    const doc = docs[used++]!;
    cut.add(tokenizer.encode(doc, { bos }));
    bytes += Buffer.byteLength(doc);
    tick(() => ({ documents: used, totalDocuments: docs.length, bytes, totalBytes }));
  }
  const sequences = cut.sequences.slice(0, wanted);
  const scoreFrom = cut.scoreFrom.slice(0, wanted);
  if (cut instanceof Segments && sequences.length === 0) throw new UserError(`${path}: ${cut.tokens} tokens do not fill one segment of ${spec.segment} (field segment)`);

  const parts = [
    `text ${basename(path)}`,
    `${docs.length} docs${spec.select ? ` (${spec.select})` : ''}`,
    tokenizer.describe,
    bos ? 'bos' : spec.bos ? 'no bos (the tokenizer has no BOS token)' : 'no bos',
  ];
  if (spec.segment) parts.push(`${sequences.length} segments of ${spec.segment}`);
  else parts.push(`max_length ${spec.max_length}${spec.stride ? `, stride ${spec.stride} (${sequences.length} windows)` : cut instanceof Windows && cut.truncated ? ` (${cut.truncated} docs truncated)` : ''}`);
  if (used < docs.length) parts.push(`the first ${sequences.length} needed only ${used} docs`);
  const ds: TokenDataset = {
    kind: 'tokens',
    sequences,
    vocabSize: tokenizer.vocabSize,
    files: [
      { path, sha256: sha256File(path) },
      { path: tokenizerPath, sha256: sha256File(tokenizerPath) },
    ],
    description: parts.join(', '),
  };
  if (scoreFrom.some((s) => s > 0)) ds.scoreFrom = scoreFrom;
  return ds;
}

/** Calibration: documents concatenated and cut into `segment`-token sequences as they arrive. */
class Segments {
  readonly sequences: Int32Array[] = [];
  readonly scoreFrom: number[] = [];
  tokens = 0;
  private pending: number[] = [];

  constructor(private readonly segment: number) {}

  add(ids: number[]): void {
    this.tokens += ids.length;
    let from = 0;
    if (this.pending.length > 0) {
      from = Math.min(this.segment - this.pending.length, ids.length);
      for (let i = 0; i < from; i++) this.pending.push(ids[i]!);
      if (this.pending.length < this.segment) return;
      this.push(Int32Array.from(this.pending));
      this.pending = [];
    }
    for (; from + this.segment <= ids.length; from += this.segment) this.push(Int32Array.from(ids.slice(from, from + this.segment)));
    this.pending = ids.slice(from);
  }

  private push(seq: Int32Array): void {
    this.sequences.push(seq);
    this.scoreFrom.push(0);
  }
}

/** Evaluation: one sequence per document truncated at `maxLength`, or strided windows over it. */
class Windows {
  readonly sequences: Int32Array[] = [];
  readonly scoreFrom: number[] = [];
  truncated = 0;

  constructor(
    private readonly maxLength: number,
    private readonly stride: number | undefined,
  ) {}

  add(ids: number[]): void {
    if (ids.length <= this.maxLength || this.stride === undefined) {
      if (ids.length > this.maxLength) this.truncated++;
      this.sequences.push(Int32Array.from(ids.slice(0, this.maxLength)));
      this.scoreFrom.push(0);
      return;
    }
    // window k starts at k·stride and scores from the first token the previous window did not predict
    let prevEnd = 0;
    for (let start = 0; prevEnd < ids.length; start += this.stride) {
      const end = Math.min(start + this.maxLength, ids.length);
      this.sequences.push(Int32Array.from(ids.slice(start, end)));
      this.scoreFrom.push(prevEnd === 0 ? 0 : prevEnd - start - 1);
      prevEnd = end;
    }
  }
}
