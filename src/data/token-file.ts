import { UserError } from '../errors.js';
import { readInputFile } from '../model/onnx-io.js';
import { sha256File } from '../util/hash.js';
import type { TokensSpec } from './spec.js';
import type { TokenDataset } from './types.js';

/** Little-endian uint16/uint32 token ids cut into windows of `seq_len`, every `stride` tokens from `offset`. */
export function loadTokenFile(spec: TokensSpec, path: string): TokenDataset {
  const buf = readInputFile(path, 'token file');
  const width = spec.dtype === 'uint16' ? 2 : 4;
  if (buf.byteLength % width !== 0) throw new UserError(`${path}: ${buf.byteLength} bytes is not a whole number of ${spec.dtype} ids (field dtype)`);
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
  if (sequences.length === 0) throw new UserError(`${path}: ${total} tokens from offset ${spec.offset} do not fill one window of ${spec.seq_len} (field seq_len)`);
  if (spec.count !== undefined && sequences.length < spec.count) {
    throw new UserError(`${path}: only ${sequences.length} windows of ${spec.seq_len} fit, count asks for ${spec.count} (field count)`);
  }
  let max = 0;
  for (const s of sequences) for (const v of s) if (v > max) max = v;
  return {
    kind: 'tokens',
    sequences,
    files: [{ path, sha256: sha256File(path) }],
    maxTokenId: max,
    description: `tokens ${path.split('/').pop()} ${spec.dtype}, ${sequences.length} windows of ${spec.seq_len}${stride !== spec.seq_len ? ` stride ${stride}` : ''}${spec.offset ? ` from ${spec.offset}` : ''}`,
  };
}
