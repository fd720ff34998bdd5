import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { datasetSpecFromCli } from '../../src/data/cli-spec.js';
import { loadDataset } from '../../src/data/load.js';
import type { TokenDataset } from '../../src/data/types.js';
import { UserError } from '../../src/errors.js';
import { FIXTURES, tempDir } from '../helpers.js';
import { idx } from './build.js';

const tmp = tempDir('pare-cli-');
afterAll(() => tmp.cleanup());
const file = (name: string, bytes: string | Uint8Array) => {
  const p = join(tmp.dir, name);
  writeFileSync(p, bytes);
  return p;
};
const userError = (f: () => unknown, re: RegExp) => {
  expect(f).toThrow(UserError);
  expect(f).toThrow(re);
};

describe('dataset spec files', () => {
  it('a YAML spec resolves its paths against its own folder', async () => {
    mkdirSync(join(tmp.dir, 'specs'));
    const yaml = `kind: text\npath: ${FIXTURES.validHead}\ntokenizer: ../tok.bin\nselect: "1-3"\nmax_length: 64\n`;
    file('specs/eval.yaml', yaml);
    file('tok.bin', new Uint8Array(0));
    const { spec, baseDir } = datasetSpecFromCli('specs/eval.yaml', {}, tmp.dir);
    expect(baseDir).toBe(join(tmp.dir, 'specs'));
    expect(spec).toMatchObject({ kind: 'text', tokenizer: '../tok.bin', select: '1-3', max_length: 64, bos: true, separator: '<|endoftext|>' });
    // the relative tokenizer is looked for beside the spec's folder: the empty file there is a user error naming it
    await expect(loadDataset(spec, baseDir)).rejects.toThrow(/tok\.bin: not a llama2.c tokenizer.bin/);
  });

  it('a JSON spec works the same way', async () => {
    const ids = file('ids.u16.bin', new Uint8Array(Uint16Array.from({ length: 100 }, (_, i) => i).buffer));
    const path = file('ids.json', JSON.stringify({ kind: 'tokens', path: ids, seq_len: 32, count: 2 }));
    const { spec, baseDir } = datasetSpecFromCli(path, {}, '/');
    const ds = (await loadDataset(spec, baseDir)) as TokenDataset;
    expect(ds.sequences).toHaveLength(2);
  });

  it('schema errors name the file and every bad field on one line', () => {
    file('bad.yaml', 'kind: tokens\npath: x.bin\nseq_len: "256"\nstrid: 3\n');
    let message = '';
    try {
      datasetSpecFromCli('bad.yaml', {}, tmp.dir);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^bad\.yaml: /);
    expect(message).toContain('seq_len');
    expect(message).toContain('strid');
    expect(message).not.toContain('\n');
    userError(() => datasetSpecFromCli(file('kind.yaml', 'kind: audio\npath: a.wav\n'), {}, tmp.dir), /kind\.yaml: kind: /);
    userError(() => datasetSpecFromCli(file('syntax.yaml', 'kind: [text\n'), {}, tmp.dir), /syntax\.yaml:2:1 not a readable dataset spec \(YAML syntax error: /);
    userError(() => datasetSpecFromCli('absent.yaml', {}, tmp.dir), /absent\.yaml: no such dataset spec/);
    userError(() => datasetSpecFromCli(file('ok.yaml', 'kind: tokens\npath: x.bin\nseq_len: 8\n'), { seqLen: 16 }, tmp.dir), /ok\.yaml: --seq-len cannot be combined with a dataset spec file/);
  });
});

describe('data files guessed from flags', () => {
  it('.txt is text with --tokenizer, --select and --max-length', () => {
    const { spec, baseDir } = datasetSpecFromCli('stories.txt', { tokenizer: 'tok.bin', select: '1-2', maxLength: 128 }, tmp.dir);
    expect(baseDir).toBe(tmp.dir);
    expect(spec).toMatchObject({ kind: 'text', path: join(tmp.dir, 'stories.txt'), tokenizer: join(tmp.dir, 'tok.bin'), select: '1-2', max_length: 128 });
    userError(() => datasetSpecFromCli('stories.txt', {}, tmp.dir), /stories\.txt: text data needs --tokenizer/);
  });

  it('*-idx3-ubyte[.gz] is IDX, with the idx1 labels beside it found, gzipped or not', () => {
    const images = file('t10k-images-idx3-ubyte.gz', idx([1, 1, 1], Uint8Array.of(0)));
    const labels = file('t10k-labels-idx1-ubyte', idx([1], Uint8Array.of(0)));
    expect(datasetSpecFromCli(images, {}, '/').spec).toMatchObject({ kind: 'idx', images, labels, scale: 1 });
    const lone = file('other-idx3-ubyte', idx([1, 1, 1], Uint8Array.of(0)));
    expect(datasetSpecFromCli(lone, { scale: 0.5, limit: 1 }, '/').spec).toEqual({ kind: 'idx', images: lone, scale: 0.5, limit: 1 });
    expect(datasetSpecFromCli(FIXTURES.mnistImages, {}, '/').spec).toMatchObject({ labels: FIXTURES.mnistLabels });
  });

  it('.npy is an array; .bin with --shape raw images, with --seq-len token ids', () => {
    expect(datasetSpecFromCli('x.npy', { labels: 'y.npy', layout: 'nchw' }, tmp.dir).spec).toMatchObject({ kind: 'npy', labels: join(tmp.dir, 'y.npy'), layout: 'nchw' });
    expect(datasetSpecFromCli('x.bin', { shape: [32, 32, 3], scale: 1 / 255, labels: 'y.bin' }, tmp.dir).spec).toMatchObject({ kind: 'images', shape: [32, 32, 3], layout: 'nhwc', labels: join(tmp.dir, 'y.bin') });
    expect(datasetSpecFromCli('x.bin', { shape: [32, 32, 3], labels: 'y.bin', labelsDtype: 'uint16' }, tmp.dir).spec).toMatchObject({ kind: 'images', labels_dtype: 'uint16' });
    expect(datasetSpecFromCli('val.u16.bin', { seqLen: 256, count: 64 }, tmp.dir).spec).toMatchObject({ kind: 'tokens', dtype: 'uint16', seq_len: 256, count: 64, offset: 0 });
    expect(datasetSpecFromCli('val.u32.bin', { seqLen: 8 }, tmp.dir).spec).toMatchObject({ dtype: 'uint32' });
  });

  it('missing or contradictory flags are user errors naming the file', () => {
    userError(() => datasetSpecFromCli('blob.bin', {}, tmp.dir), /blob\.bin: cannot tell what this data is; give --seq-len <n> for token ids, --shape HxWxC/);
    userError(() => datasetSpecFromCli('val.u16', {}, tmp.dir), /val\.u16: cannot tell what this data is; token ids need --seq-len/);
    userError(() => datasetSpecFromCli('blob.bin', { shape: [2, 2, 1], seqLen: 4 }, tmp.dir), /blob\.bin: give --shape \(raw images\) or --seq-len \(token ids\), not both/);
    userError(() => datasetSpecFromCli('blob.bin', { seqLen: 1 }, tmp.dir), /blob\.bin: seq_len: /);
    userError(() => datasetSpecFromCli('stories.txt', { tokenizer: 't.bin', select: 'all' }, tmp.dir), /stories\.txt: select: expected ranges like "1-10"/);
  });
});
