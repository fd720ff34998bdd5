import { basename } from 'node:path';
import { UserError } from '../errors.js';
import { formatBytes, INPUT_LIMITS, readInputRange, statInput } from '../util/read-file.js';
import { sha256File } from '../util/hash.js';
import type { TokensSpec } from './spec.js';
import type { TokenDataset } from './types.js';

/**
 * Little-endian uint16/uint32 token ids (nanoGPT's train.bin/val.bin layout) cut into windows of
 * `seq_len`, one every `stride` tokens (default seq_len: non-overlapping) from token `offset`, at
 * most `count`. Each window is evaluated on its own: seq_len − 1 predicted tokens.
 */
export function loadTokenFile(spec: TokensSpec, path: string): TokenDataset {
  const width = spec.dtype === 'uint16' ? 2 : 4;
  const size = statInput(path, 'token file', 'path').size;
  if (size % width !== 0) throw new UserError(`${path}: dtype: ${size} bytes is not a whole number of ${spec.dtype} ids`);
  const total = size / width;
  const stride = spec.stride ?? spec.seq_len;
  // only the tokens the windows cover are read: up to the end of window `count`, or the whole file
  const end = spec.count === undefined ? total : Math.min(total, spec.offset + (spec.count - 1) * stride + spec.seq_len);
  const from = Math.min(spec.offset, end);
  if ((end - from) * width > INPUT_LIMITS.samples) {
    throw new UserError(`${path}: count: the windows asked for span ${formatBytes((end - from) * width)} of token ids, more than pare reads (${formatBytes(INPUT_LIMITS.samples)}); set count (or a smaller one)`);
  }
  const buf = readInputRange(path, 'token file', from * width, (end - from) * width, 'path');
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const available = from + buf.byteLength / width;
  const sequences: Int32Array[] = [];
  for (let start = spec.offset; start + spec.seq_len <= available; start += stride) {
    if (spec.count !== undefined && sequences.length === spec.count) break;
    const seq = new Int32Array(spec.seq_len);
    const at = start - from;
    for (let i = 0; i < spec.seq_len; i++) seq[i] = width === 2 ? view.getUint16((at + i) * 2, true) : view.getUint32((at + i) * 4, true);
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
