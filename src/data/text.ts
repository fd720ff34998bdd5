import { UserError } from '../errors.js';
import { readInputFile } from '../model/onnx-io.js';
import { sha256File } from '../util/hash.js';
import { parseSelection } from './selection.js';
import type { TextSpec } from './spec.js';
import { loadTokenizer } from './tokenizer.js';
import type { TokenDataset } from './types.js';

/**
 * Text split into documents on `separator` (each trimmed, empty ones dropped), encoded one by one
 * (BOS first, as llama2.c's TinyStories pretokenization does). Each document is one sequence,
 * truncated to `max_length`; with `stride`, a longer document becomes windows starting every
 * `stride` tokens, and each window after the first scores only the tokens the previous did not
 * (the rest are context), so no token is counted twice. With `segment`, the encoded documents are
 * concatenated and cut into segments of that many tokens (the calibration protocol).
 */
export function loadText(spec: TextSpec, path: string, tokenizerPath: string): TokenDataset {
  const text = readInputFile(path, 'text').toString('utf8');
  const tokenizer = loadTokenizer(tokenizerPath);
  let docs = text.split(spec.separator).map((d) => d.trim()).filter((d) => d.length > 0);
  if (docs.length === 0) throw new UserError(`${path}: no documents (separator ${JSON.stringify(spec.separator)})`);
  if (spec.select) {
    const picks = parseSelection(spec.select);
    const bad = picks.find((i) => i < 0 || i >= docs.length);
    if (bad !== undefined) throw new UserError(`${path}: select "${spec.select}" asks for document ${bad + 1}, the file has ${docs.length}`);
    docs = picks.map((i) => docs[i]!);
  }
  const encoded = docs.map((d) => tokenizer.encode(d, { bos: spec.bos }));
  const sequences: Int32Array[] = [];
  const scoreFrom: number[] = [];
  if (spec.segment) {
    const all = encoded.flat();
    for (let i = 0; i + spec.segment <= all.length; i += spec.segment) sequences.push(Int32Array.from(all.slice(i, i + spec.segment)));
    if (sequences.length === 0) throw new UserError(`${path}: ${all.length} tokens do not fill one segment of ${spec.segment}`);
  } else {
    for (const ids of encoded) {
      if (!spec.stride || ids.length <= spec.max_length) {
        sequences.push(Int32Array.from(ids.slice(0, spec.max_length)));
        scoreFrom.push(0);
        continue;
      }
      // strided windows: window k starts at k·stride; it scores the positions past the previous window's end
      let prevEnd = 0;
      for (let start = 0; prevEnd < ids.length; start += spec.stride) {
        const end = Math.min(start + spec.max_length, ids.length);
        sequences.push(Int32Array.from(ids.slice(start, end)));
        scoreFrom.push(Math.max(0, prevEnd - start - 1));
        prevEnd = end;
        if (end === ids.length) break;
      }
    }
  }
  const parts = [`text ${path.split('/').pop()}`, `${docs.length} docs${spec.select ? ` (${spec.select})` : ''}`, tokenizer.describe, spec.bos ? 'bos' : 'no bos'];
  parts.push(spec.segment ? `segments of ${spec.segment}` : `max_length ${spec.max_length}${spec.stride ? ` stride ${spec.stride}` : ''}`);
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

