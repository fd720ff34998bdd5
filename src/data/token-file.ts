import { basename } from 'node:path';
import { UserError } from '../errors.js';
import { readInputFile } from '../util/read-file.js';
import { sha256File } from '../util/hash.js';
import type { TokensSpec } from './spec.js';
import type { TokenDataset } from './types.js';

/**
 * Little-endian uint16/uint32 token ids (nanoGPT's train.bin/val.bin layout) cut into windows of
 * `seq_len`, one every `stride` tokens (default seq_len: non-overlapping) from token `offset`, at
 * most `count`. Each window is evaluated on its own: seq_len − 1 predicted tokens.
 */
export function loadTokenFile(spec: TokensSpec, path: string): TokenDataset {
  const buf = readInputFile(path, 'token file');
  const width = spec.dtype === 'uint16' ? 2 : 4;
  if (buf.byteLength % width !== 0) throw new UserError(`${path}: dtype: ${buf.byteLength} bytes is not a whole number of ${spec.dtype} ids`);
  const total = buf.byteLength / width;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const stride = spec.stride ?? spec.seq_len;
  const sequences: Int32Array[] = [];
  for (let start = spec.offset; start + spec.seq_len <= total; start += stride) {
    if (spec.count !== undefined && sequences.length === spec.count) break;
    const seq = new Int32Array(spec.seq_len);
    for (let i = 0; i < spec.seq_len; i++) seq[i] = width === 2 ? view.getUint16((start + i) * 2, true) : view.getUint32((start + i) * 4, true);
    sequences.push(seq);
  }
  if (sequences.length === 0) throw new UserError(`${path}: seq_len: ${total} tokens from offset ${spec.offset} do not fill one window of ${spec.seq_len}`);
  if (spec.count !== undefined && sequences.length < spec.count) {
    throw new UserError(`${path}: count: only ${sequences.length} windows of ${spec.seq_len}${stride !== spec.seq_len ? ` every ${stride}` : ''} fit, count asks for ${spec.count}`);
  }
  let max = 0;
  for (const s of sequences) for (const v of s) if (v > max) max = v;
  return {
    kind: 'tokens',
    sequences,
    files: [{ path, sha256: sha256File(path) }],
    maxTokenId: max,
    description: `tokens ${basename(path)} ${spec.dtype}, ${sequences.length} windows of ${spec.seq_len}${stride !== spec.seq_len ? ` stride ${stride}` : ''}${spec.offset ? ` from ${spec.offset}` : ''}`,
  };
}
