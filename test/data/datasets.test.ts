import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { datasetSpecFromCli } from '../../src/data/cli-spec.js';
import { HfTokenizer } from '../../src/data/hf-tokenizer.js';
import { Llama2cTokenizer } from '../../src/data/llama2c-tokenizer.js';
import { loadDataset } from '../../src/data/load.js';
import type { TensorDataset, TokenDataset } from '../../src/data/types.js';
import { sharedPath, tempDir } from '../helpers.js';

const tmp = tempDir('pare-data-');
afterAll(() => tmp.cleanup());
const file = (name: string, bytes: string | Uint8Array) => {
  const p = join(tmp.dir, name);
  writeFileSync(p, bytes);
  return p;
};
const TOK = sharedPath('models/stories260K/tok512.bin');

function idx(dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  out.set([0, 0, 8, dims.length]);
  const view = new DataView(out.buffer);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

function npy(descr: string, shape: number[], data: Uint8Array, fortran = false): Uint8Array {
  let header = `{'descr': '${descr}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const out = new Uint8Array(10 + header.length + data.length);
  out.set(Buffer.from('\x93NUMPY', 'latin1'));
  out.set([1, 0], 6);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(Buffer.from(header, 'latin1'), 10);
  out.set(data, 10 + header.length);
  return out;
}

describe('llama2.c tokenizer', () => {
  const tok = Llama2cTokenizer.read(TOK);
  it('encodes with BOS and the dummy-prefix space, and decodes back', () => {
    const ids = tok.encode('Once upon a time, there was a little dog.', { bos: true });
    expect(ids[0]).toBe(1);
    expect(tok.vocabSize).toBe(512);
    expect(tok.decode(ids)).toBe(' Once upon a time, there was a little dog.');
  });
  it('falls back to byte pieces for characters outside the vocabulary', () => {
    const ids = tok.encode('naïve 🙂', { bos: false });
    expect(ids.some((i) => i >= 3 && i < 259)).toBe(true);
    expect(tok.decode(ids)).toBe(' naïve 🙂');
  });
  it('a truncated file is a user error naming it', () => {
    const bad = file('tok-truncated.bin', readFileSync(TOK).subarray(0, 1000));
    expect(() => Llama2cTokenizer.read(bad)).toThrow(/tok-truncated\.bin: not a llama2.c tokenizer.bin/);
  });
});

describe('Hugging Face tokenizer.json', () => {
  it('a character-level BPE for shakespeare-char encodes the validation text to its stored ids', async () => {
    const chars: string[] = JSON.parse(readFileSync(sharedPath('models/shakespeare-char/vocab.json'), 'utf8'));
    const json = { version: '1.0', added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, model: { type: 'BPE', vocab: Object.fromEntries(chars.map((c, i) => [c, i])), merges: [] } };
    const path = file('tokenizer.json', JSON.stringify(json));
    const tok = HfTokenizer.read(path);
    expect(tok.vocabSize).toBe(65);
    const stored = await loadDataset({ kind: 'tokens', path: sharedPath('models/shakespeare-char/val.u16.bin'), dtype: 'uint16', seq_len: 300, count: 1, offset: 0 }, tmp.dir);
    const ids = Array.from((stored as TokenDataset).sequences[0]!);
    const text = ids.map((i) => chars[i]).join('');
    expect(tok.encode(text, { bos: false })).toEqual(ids);
  });
  it('a file that is not a tokenizer is a user error naming it', () => {
    expect(() => HfTokenizer.read(file('not-tok.json', '{"hello": 1}'))).toThrow(/not-tok\.json: not a Hugging Face tokenizer.json/);
  });
});

describe('text datasets', () => {
  it('select picks documents; strided windows score every token exactly once', async () => {
    const base = { kind: 'text' as const, path: sharedPath('data/tinystories/valid-head.txt'), tokenizer: TOK, separator: '<|endoftext|>', bos: true };
    const whole = (await loadDataset({ ...base, select: '2-3', max_length: 100000 }, tmp.dir)) as TokenDataset;
    expect(whole.sequences).toHaveLength(2);
    const strided = (await loadDataset({ ...base, select: '2-3', max_length: 64, stride: 32 }, tmp.dir)) as TokenDataset;
    const scored = strided.sequences.reduce((a, s, i) => a + s.length - 1 - (strided.scoreFrom?.[i] ?? 0), 0);
    expect(scored).toBe(whole.sequences.reduce((a, s) => a + s.length - 1, 0));
    expect(strided.sequences.every((s) => s.length <= 64)).toBe(true);
  });
  it('segment concatenates documents into calibration segments', async () => {
    const ds = (await loadDataset({ kind: 'text', path: sharedPath('data/tinystories/valid-head.txt'), tokenizer: TOK, separator: '<|endoftext|>', bos: true, max_length: 512, segment: 128 }, tmp.dir)) as TokenDataset;
    expect(ds.sequences.every((s) => s.length === 128)).toBe(true);
    const docs = (await loadDataset({ kind: 'text', path: sharedPath('data/tinystories/valid-head.txt'), tokenizer: TOK, separator: '<|endoftext|>', bos: true, max_length: 100000 }, tmp.dir)) as TokenDataset;
    const total = docs.sequences.reduce((a, s) => a + s.length, 0);
    expect(ds.sequences.length).toBe(Math.floor(total / 128));
    expect(Array.from(ds.sequences[0]!)).toEqual(Array.from(docs.sequences[0]!.subarray(0, 128)));
  });
  it('a selection past the last document names the file', async () => {
    await expect(loadDataset({ kind: 'text', path: sharedPath('data/tinystories/valid-head.txt'), tokenizer: TOK, separator: '<|endoftext|>', bos: true, max_length: 512, select: '40-50' }, tmp.dir)).rejects.toThrow(/valid-head\.txt: select "40-50" asks for document 47/);
  });
});

describe('image and array datasets', () => {
  const pixels = Uint8Array.from({ length: 3 * 2 * 2 }, (_, i) => i * 10);
  it('IDX, gzipped or not, normalised and with labels', async () => {
    for (const gz of [false, true]) {
      const images = file(`img${gz}-idx3-ubyte${gz ? '.gz' : ''}`, gz ? gzipSync(idx([3, 2, 2], pixels)) : idx([3, 2, 2], pixels));
      const labels = file(`lab${gz}-idx1-ubyte`, idx([3], Uint8Array.of(7, 1, 0)));
      const ds = (await loadDataset({ kind: 'idx', images, labels, scale: 0.1, mean: [1], std: [2] }, tmp.dir)) as TensorDataset;
      expect(ds.sampleShape).toEqual([1, 2, 2]);
      expect(Array.from(ds.labels!)).toEqual([7, 1, 0]);
      expect(ds.data[5]).toBeCloseTo((50 * 0.1 - 1) / 2, 6);
    }
  });
  it('IDX label count mismatch and bad magic are user errors naming the file', async () => {
    const images = file('m-idx3-ubyte', idx([3, 2, 2], pixels));
    const labels = file('m-labels-idx1-ubyte', idx([2], Uint8Array.of(1, 2)));
    await expect(loadDataset({ kind: 'idx', images, labels, scale: 1 }, tmp.dir)).rejects.toThrow(/m-labels-idx1-ubyte: 2 labels for 3 images/);
    await expect(loadDataset({ kind: 'idx', images: file('bad-idx3-ubyte', 'hello world'), scale: 1 }, tmp.dir)).rejects.toThrow(/bad-idx3-ubyte: not an IDX file/);
  });
  it('raw uint8 images: per-channel mean/std along the NHWC channel axis; wrong size is an error', async () => {
    const path = file('raw.bin', Uint8Array.of(10, 20, 30, 40, 50, 60));
    const ds = (await loadDataset({ kind: 'images', path, shape: [1, 2, 3], layout: 'nhwc', scale: 1, mean: [0, 10, 20], std: [1, 2, 4] }, tmp.dir)) as TensorDataset;
    expect(Array.from(ds.data)).toEqual([10, 5, 2.5, 40, 20, 10]);
    await expect(loadDataset({ kind: 'images', path, shape: [2, 2, 2], layout: 'nhwc', scale: 1 }, tmp.dir)).rejects.toThrow(/raw\.bin: 6 bytes is not a whole number/);
  });
  it('npy float32 samples with int64 labels; Fortran order is refused', async () => {
    const values = Float32Array.from({ length: 4 * 3 }, (_, i) => i / 2);
    const path = file('x.npy', npy('<f4', [4, 3], new Uint8Array(values.buffer)));
    const labels = file('y.npy', npy('<i8', [4], new Uint8Array(BigInt64Array.from([0n, 1n, 2n, 1n]).buffer)));
    const ds = (await loadDataset({ kind: 'npy', path, labels, scale: 1 }, tmp.dir)) as TensorDataset;
    expect(ds.count).toBe(4);
    expect(ds.sampleShape).toEqual([3]);
    expect(Array.from(ds.data)).toEqual(Array.from(values));
    expect(Array.from(ds.labels!)).toEqual([0, 1, 2, 1]);
    const f = file('f.npy', npy('<f4', [4, 3], new Uint8Array(values.buffer), true));
    await expect(loadDataset({ kind: 'npy', path: f, scale: 1 }, tmp.dir)).rejects.toThrow(/f\.npy: Fortran-order/);
  });
});

describe('token-id files and --data guesses', () => {
  it('windows at offset and stride; too few windows is an error naming count', async () => {
    const path = file('ids.u16.bin', new Uint8Array(Uint16Array.from({ length: 100 }, (_, i) => i).buffer));
    const ds = (await loadDataset({ kind: 'tokens', path, dtype: 'uint16', seq_len: 10, stride: 5, offset: 3 }, tmp.dir)) as TokenDataset;
    expect(Array.from(ds.sequences[1]!.subarray(0, 3))).toEqual([8, 9, 10]);
    await expect(loadDataset({ kind: 'tokens', path, dtype: 'uint16', seq_len: 50, offset: 0, count: 3 }, tmp.dir)).rejects.toThrow(/count/);
  });
  it('text without --tokenizer, and an unrecognisable file, are user errors', () => {
    expect(() => datasetSpecFromCli('stories.txt', {}, tmp.dir)).toThrow(/--tokenizer/);
    expect(() => datasetSpecFromCli('blob.bin', {}, tmp.dir)).toThrow(/cannot tell what this data is/);
    expect(datasetSpecFromCli('ids.u16.bin', { seqLen: 8 }, tmp.dir).spec.kind).toBe('tokens');
  });
});
