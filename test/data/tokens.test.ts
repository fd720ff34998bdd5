import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/load.js';
import { loadTokenizer } from '../../src/data/tokenizer.js';
import type { TokensSpec } from '../../src/data/spec.js';
import type { TokenDataset } from '../../src/data/types.js';
import { UserError } from '../../src/errors.js';
import { FIXTURES, itWithShared, sharedPath, tempDir } from '../helpers.js';

const tmp = tempDir('pare-ids-');
afterAll(() => tmp.cleanup());
const file = (name: string, bytes: Uint8Array) => {
  const p = join(tmp.dir, name);
  writeFileSync(p, bytes);
  return p;
};
const u16 = file('ids.u16.bin', new Uint8Array(Uint16Array.from({ length: 100 }, (_, i) => i * 600).buffer));
const u32 = file('ids.u32.bin', new Uint8Array(Uint32Array.from({ length: 100 }, (_, i) => i * 70000).buffer));
const load = async (over: Partial<TokensSpec>) => (await loadDataset({ kind: 'tokens', path: u16, dtype: 'uint16', seq_len: 10, offset: 0, ...over } as TokensSpec, tmp.dir)) as TokenDataset;

describe('token-id files', () => {
  it('non-overlapping windows by default, all that fit', async () => {
    const ds = await load({});
    expect(ds.sequences).toHaveLength(10);
    expect(Array.from(ds.sequences[3]!)).toEqual(Array.from({ length: 10 }, (_, i) => (30 + i) * 600));
    expect(ds.maxTokenId).toBe(99 * 600);
    expect(ds.vocabSize).toBeUndefined();
    expect(ds.description).toBe('tokens ids.u16.bin uint16, 10 windows of 10');
  });

  it('offset, stride and count; uint32 little-endian', async () => {
    const ds = await load({ offset: 3, stride: 5, count: 4 });
    expect(ds.sequences.map((s) => s[0]! / 600)).toEqual([3, 8, 13, 18]);
    const wide = await load({ path: u32, dtype: 'uint32', seq_len: 4, offset: 96 });
    expect(Array.from(wide.sequences[0]!)).toEqual([96, 97, 98, 99].map((i) => i * 70000));
  });

  itWithShared('shakespeare val.u16.bin: 64 windows of 256 predict 16,320 tokens', async () => {
    const ds = (await loadDataset({ kind: 'tokens', path: 'models/shakespeare-char/val.u16.bin', dtype: 'uint16', seq_len: 256, count: 64, offset: 0 }, sharedPath())) as TokenDataset;
    expect(ds.sequences.reduce((a, s) => a + s.length - 1, 0)).toBe(16320);
    expect(ds.maxTokenId).toBeLessThan(65);
  });

  it('valid-head.txt encoded by tok512 as uint16 ids: 32 windows of 256 predict 8,160 tokens, the ids as written', async () => {
    const tok = loadTokenizer(FIXTURES.tok512);
    const ids = readFileSync(FIXTURES.validHead, 'utf8').split('<|endoftext|>').flatMap((d) => tok.encode(d.trim(), { bos: true }));
    const path = file('stories.u16.bin', new Uint8Array(Uint16Array.from(ids).buffer));
    const ds = (await loadDataset({ kind: 'tokens', path, dtype: 'uint16', seq_len: 256, count: 32, offset: 0 }, tmp.dir)) as TokenDataset;
    expect(ds.sequences.reduce((a, s) => a + s.length - 1, 0)).toBe(8160);
    expect(Array.from(ds.sequences[31]!)).toEqual(ids.slice(31 * 256, 32 * 256));
    expect(ds.maxTokenId).toBe(Math.max(...ids.slice(0, 32 * 256)));
    expect(ds.maxTokenId).toBeLessThan(512);
  });

  it('size, window and count problems are user errors naming the file and field', async () => {
    const odd = file('odd.bin', new Uint8Array(7));
    const cases: [Partial<TokensSpec>, RegExp][] = [
      [{ path: odd }, /odd\.bin: dtype: 7 bytes is not a whole number of uint16 ids/],
      [{ seq_len: 101 }, /ids\.u16\.bin: seq_len: 100 tokens from offset 0 do not fill one window of 101/],
      [{ offset: 95 }, /ids\.u16\.bin: seq_len: 100 tokens from offset 95/],
      [{ seq_len: 50, count: 3 }, /ids\.u16\.bin: count: only 2 windows of 50 fit, count asks for 3/],
      [{ path: join(tmp.dir, 'none.bin') }, /none\.bin: no such token file/],
    ];
    for (const [over, re] of cases) {
      await expect(load(over)).rejects.toThrow(UserError);
      await expect(load(over)).rejects.toThrow(re);
    }
  });
});
