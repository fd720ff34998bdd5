/** Small generated inputs for the data tests: IDX, .npy, raw images, llama2.c tokenizer.bin and tokenizer.json writers. */
import type { Llama2cTokenizer } from '../../src/data/llama2c-tokenizer.js';
import { seededRandom } from '../../src/util/random.js';

/** An IDX file: 0x00 0x00 0x08 rank, big-endian dims, uint8 data. */
export function idx(dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  out.set([0, 0, 8, dims.length]);
  const view = new DataView(out.buffer);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

/** A .npy file as NumPy writes it: version 1.0 (uint16 header length) or 2.0/3.0 (uint32), header padded to 64 bytes. */
export function npy(descr: string, shape: number[], data: ArrayBufferView, opts: { fortran?: boolean; version?: 1 | 2 | 3 } = {}): Uint8Array {
  const version = opts.version ?? 1;
  const prefix = version === 1 ? 10 : 12;
  let header = `{'descr': '${descr}', 'fortran_order': ${opts.fortran ? 'True' : 'False'}, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(63 - ((prefix + header.length) % 64)) + '\n';
  const head = Buffer.from(header, version === 3 ? 'utf8' : 'latin1');
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(prefix + head.length + bytes.length);
  out.set(Buffer.from('\x93NUMPY', 'latin1'));
  out.set([version, 0], 6);
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, head.length, true);
  else view.setUint32(8, head.length, true);
  out.set(head, prefix);
  out.set(bytes, prefix + head.length);
  return out;
}

/** `count` seeded random uint8 images of `shape`, back to back (the raw form `kind: images` reads). */
export function rawImages(count: number, shape: number[], seed: number): Uint8Array {
  const r = seededRandom(seed);
  return Uint8Array.from({ length: count * shape.reduce((a, b) => a * b, 1) }, () => Math.floor(r() * 256));
}

/**
 * A llama2.c tokenizer.bin with the Llama layout (0 <unk>, 1 BOS, 2 EOS, 3..258 byte pieces) and
 * then `extra` pieces with their scores.
 */
export function tokenizerBin(extra: [string, number][]): Uint8Array {
  const pieces: [string, number][] = [['<unk>', 0], ['\n<s>\n', 0], ['\n</s>\n', 0]];
  for (let b = 0; b < 256; b++) pieces.push([`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 0]);
  pieces.push(...extra);
  const encoded = pieces.map(([p, s]) => [Buffer.from(p, 'utf8'), s] as const);
  const maxLen = Math.max(...encoded.map(([b]) => b.length));
  const out = Buffer.alloc(4 + encoded.reduce((a, [b]) => a + 8 + b.length, 0));
  out.writeInt32LE(maxLen, 0);
  let off = 4;
  for (const [b, s] of encoded) {
    out.writeFloatLE(s, off);
    out.writeInt32LE(b.length, off + 4);
    b.copy(out, off + 8);
    off += 8 + b.length;
  }
  return out;
}

/**
 * The tokenizer.json Hugging Face's LlamaConverter would write for a SentencePiece BPE model,
 * built from the llama2.c export of it: "▁" for spaces, a Prepend("▁") normalizer (the dummy
 * prefix), byte fallback, and merges (a, b) for every split of a piece into two pieces, ranked by
 * the merged piece's score.
 */
export function llamaTokenizerJson(tok: Llama2cTokenizer): object {
  const names = tok.pieces.map((p, i) => (i === 1 ? '<s>' : i === 2 ? '</s>' : p.replaceAll(' ', '▁')));
  const vocab = Object.fromEntries(names.map((p, i) => [p, i]));
  const merges: [string, string, number][] = [];
  names.forEach((p, i) => {
    if (i < 259) return;
    const cps = Array.from(p);
    for (let k = 1; k < cps.length; k++) {
      const a = cps.slice(0, k).join('');
      const b = cps.slice(k).join('');
      if (vocab[a] !== undefined && vocab[b] !== undefined) merges.push([a, b, tok.scores[i]!]);
    }
  });
  merges.sort((x, y) => y[2] - x[2]);
  return {
    version: '1.0',
    added_tokens: [0, 1, 2].map((id) => ({ id, content: names[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: merges.map(([a, b]) => [a, b]) },
  };
}

/** A character-level tokenizer.json: every character one token, no merges. */
export function charTokenizerJson(chars: string[]): object {
  return {
    version: '1.0',
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Fuse' },
    model: { type: 'BPE', vocab: Object.fromEntries(chars.map((c, i) => [c, i])), merges: [] },
  };
}
