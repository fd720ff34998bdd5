import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/load.js';
import type { TextSpec } from '../../src/data/spec.js';
import type { TokenDataset } from '../../src/data/types.js';
import { UserError } from '../../src/errors.js';
import { FIXTURES, tempDir } from '../helpers.js';
import { charTokenizerJson } from './build.js';

const tmp = tempDir('pare-text-');
afterAll(() => tmp.cleanup());
const file = (name: string, bytes: string | Uint8Array) => {
  const p = join(tmp.dir, name);
  writeFileSync(p, bytes);
  return p;
};
const base: TextSpec = {
  kind: 'text',
  path: FIXTURES.validHead,
  tokenizer: FIXTURES.tok512,
  separator: '<|endoftext|>',
  bos: true,
  max_length: 512,
};
const load = async (over: Partial<TextSpec>) => (await loadDataset({ ...base, ...over }, tmp.dir)) as TokenDataset;
const predicted = (ds: TokenDataset) => ds.sequences.reduce((a, s, i) => a + s.length - 1 - (ds.scoreFrom?.[i] ?? 0), 0);

describe('text datasets', () => {
  it('valid-head.txt: 46 trimmed stories, BOS first, truncated to 512: 14,721 predicted tokens', async () => {
    const ds = await load({});
    expect(ds.sequences).toHaveLength(46);
    expect(ds.sequences.every((s) => s[0] === 1 && s.length <= 512)).toBe(true);
    expect(predicted(ds)).toBe(14721);
    expect(ds.vocabSize).toBe(512);
    expect(ds.files.map((f) => f.path)).toEqual([base.path, base.tokenizer]);
    expect(ds.files.every((f) => /^[0-9a-f]{64}$/.test(f.sha256))).toBe(true);
    expect(ds.description).toMatch(/^text valid-head\.txt, 46 docs, llama2.c tok512\.bin \(512 tokens\), bos, max_length 512 \(\d+ docs truncated\)$/);
  });

  it('select picks 1-based documents in order', async () => {
    const all = await load({ max_length: 100000 });
    const some = await load({ max_length: 100000, select: '3,1-2' });
    expect(some.sequences.map((s) => s.length)).toEqual([2, 0, 1].map((i) => all.sequences[i]!.length));
    expect(some.description).toContain('3 docs (3,1-2)');
  });

  it('strided windows: no longer than max_length, every token after the first predicted exactly once', async () => {
    const whole = await load({ select: '2-5', max_length: 100000 });
    for (const [maxLength, stride] of [[64, 32], [64, 63], [50, 7]] as const) {
      const strided = await load({ select: '2-5', max_length: maxLength, stride });
      expect(strided.sequences.every((s) => s.length <= maxLength)).toBe(true);
      expect(predicted(strided)).toBe(predicted(whole));
      // the scored part of the windows, concatenated per document, rebuilds the documents
      const rebuilt: number[] = [];
      strided.sequences.forEach((s, i) => {
        const from = strided.scoreFrom?.[i] ?? 0;
        rebuilt.push(...(from === 0 && s[0] === 1 ? s : s.subarray(from + 1)));
      });
      expect(rebuilt).toEqual(whole.sequences.flatMap((s) => Array.from(s)));
    }
  });

  it('segment concatenates the encoded documents into equal calibration segments', async () => {
    const ds = await load({ segment: 128 });
    const docs = await load({ max_length: 100000 });
    const total = docs.sequences.reduce((a, s) => a + s.length, 0);
    expect(ds.sequences).toHaveLength(Math.floor(total / 128));
    expect(ds.sequences.every((s) => s.length === 128)).toBe(true);
    expect(Array.from(ds.sequences[1]!)).toEqual(docs.sequences.flatMap((s) => Array.from(s)).slice(128, 256));
  });

  it('a tokenizer without a BOS token encodes without one and says so', async () => {
    const tok = file('abc.json', JSON.stringify(charTokenizerJson([' ', 'a', 'b', 'c', '\n'])));
    const path = file('abc.txt', '  ab\n<|endoftext|>\n\n<|endoftext|>cab  ');
    const ds = await load({ path, tokenizer: tok });
    expect(ds.sequences.map((s) => Array.from(s))).toEqual([[1, 2], [3, 1, 2]]);
    expect(ds.description).toContain('no bos (the tokenizer has no BOS token)');
  });

  it('bad selections, stride and segment settings are user errors naming the file and field', async () => {
    const cases: [Partial<TextSpec>, RegExp][] = [
      [{ select: '40-50' }, /valid-head\.txt: select "40-50" asks for document 47, the file has 46 \(field select\)/],
      [{ select: '5-3' }, /valid-head\.txt: select "5-3" has the reversed range 5-3/],
      [{ select: '0' }, /valid-head\.txt: select "0" asks for document 0/],
      [{ select: '1,1' }, /valid-head\.txt: select "1,1" picks document 1 twice/],
      [{ stride: 512 }, /valid-head\.txt: stride 512 must be below max_length 512.*\(field stride\)/],
      [{ select: '1', segment: 100000 }, /valid-head\.txt: \d+ tokens do not fill one segment of 100000 \(field segment\)/],
      [{ separator: 'ZZZ', path: file('blank.txt', ' \n ZZZ \n') }, /blank\.txt: no documents found/],
      [{ path: join(tmp.dir, 'missing.txt') }, /missing\.txt: no such text/],
    ];
    for (const [over, re] of cases) {
      const p = load(over);
      await expect(p).rejects.toThrow(UserError);
      await expect(load(over)).rejects.toThrow(re);
    }
  });
});
