import { basename } from 'node:path';
import { UserError } from '../errors.js';
import { readInputFile } from '../util/read-file.js';
import { sha256File } from '../util/hash.js';
import { parseSelection } from './selection.js';
import type { TextSpec } from './spec.js';
import { loadTokenizer } from './tokenizer.js';
import type { TokenDataset } from './types.js';

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
 */
export function loadText(spec: TextSpec, path: string, tokenizerPath: string): TokenDataset {
  const text = readInputFile(path, 'text').toString('utf8');
  const tokenizer = loadTokenizer(tokenizerPath);
  let docs = text.split(spec.separator).map((d) => d.trim()).filter((d) => d.length > 0);
  if (docs.length === 0) throw new UserError(`${path}: no documents found (separator ${JSON.stringify(spec.separator)})`);
  if (spec.select) docs = parseSelection(spec.select, docs.length, path).map((i) => docs[i]!);
  if (spec.stride !== undefined && spec.stride >= spec.max_length) {
    throw new UserError(`${path}: stride ${spec.stride} must be below max_length ${spec.max_length}, or windows would skip tokens (field stride)`);
  }
  const bos = spec.bos && tokenizer.bosId !== undefined;
  const encoded = docs.map((d) => tokenizer.encode(d, { bos }));

  const sequences: Int32Array[] = [];
  const scoreFrom: number[] = [];
  let truncated = 0;
  if (spec.segment) {
    const all = encoded.flat();
    for (let i = 0; i + spec.segment <= all.length; i += spec.segment) sequences.push(Int32Array.from(all.slice(i, i + spec.segment)));
    if (sequences.length === 0) throw new UserError(`${path}: ${all.length} tokens do not fill one segment of ${spec.segment} (field segment)`);
  } else {
    for (const ids of encoded) {
      if (ids.length <= spec.max_length || spec.stride === undefined) {
        if (ids.length > spec.max_length) truncated++;
        sequences.push(Int32Array.from(ids.slice(0, spec.max_length)));
        scoreFrom.push(0);
        continue;
      }
      // window k starts at k·stride and scores from the first token the previous window did not predict
      let prevEnd = 0;
      for (let start = 0; prevEnd < ids.length; start += spec.stride) {
        const end = Math.min(start + spec.max_length, ids.length);
        sequences.push(Int32Array.from(ids.slice(start, end)));
        scoreFrom.push(prevEnd === 0 ? 0 : prevEnd - start - 1);
        prevEnd = end;
      }
    }
  }

  const parts = [
    `text ${basename(path)}`,
    `${docs.length} docs${spec.select ? ` (${spec.select})` : ''}`,
    tokenizer.describe,
    bos ? 'bos' : spec.bos ? 'no bos (the tokenizer has no BOS token)' : 'no bos',
  ];
  if (spec.segment) parts.push(`${sequences.length} segments of ${spec.segment}`);
  else parts.push(`max_length ${spec.max_length}${spec.stride ? `, stride ${spec.stride} (${sequences.length} windows)` : truncated ? ` (${truncated} docs truncated)` : ''}`);
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
