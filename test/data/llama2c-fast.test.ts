import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Llama2cTokenizer } from '../../src/data/llama2c-tokenizer.js';
import { sharedPath, tempDir } from '../helpers.js';
import { ReferenceLlama2cEncoder } from '../reference/llama2c-encode.js';
import { rng } from '../reference/random.js';
import { tokenizerBin } from './build.js';

const ROOT = resolve(import.meta.dirname, '../..');
const TOK = join(ROOT, 'fixtures/stories260K/tok512.bin');
const SHAKESPEARE = sharedPath('data/tinyshakespeare/input.txt');
const tmp = tempDir('pare-tokfast-');
afterAll(() => tmp.cleanup());

const tok512 = Llama2cTokenizer.read(TOK);
const ref512 = new ReferenceLlama2cEncoder(readFileSync(TOK));

/** The text cut at blank lines into pieces of at most `size` characters (the reference is O(n²)). */
function chunks(text: string, size: number): string[] {
  const out: string[] = [];
  let cur = '';
  for (const para of text.split(/(?<=\n\n)/)) {
    if (cur.length + para.length > size && cur) {
      out.push(cur);
      cur = '';
    }
    cur += para;
  }
  if (cur) out.push(cur);
  return out;
}

function expectSameIds(fast: Llama2cTokenizer, ref: ReferenceLlama2cEncoder, text: string, bos: boolean, what: string): void {
  const got = fast.encode(text, { bos });
  const want = ref.encode(text, bos);
  if (got.length !== want.length || got.some((id, i) => id !== want[i])) {
    const at = got.findIndex((id, i) => id !== want[i]);
    expect.fail(`${what}: ids differ at ${at} (fast ${got.slice(at, at + 8).join(',')} vs reference ${want.slice(at, at + 8).join(',')}) for ${JSON.stringify(text.slice(0, 80))}`);
  }
}

describe('llama2.c tokenizer: heap merge equals the exact O(n²) reference', () => {
  it('every TinyStories document of valid-head.txt, and the whole file as one text', () => {
    const text = readFileSync(join(ROOT, 'fixtures/tinystories/valid-head.txt'), 'utf8');
    const docs = text.split('<|endoftext|>').map((d) => d.trim()).filter(Boolean);
    expect(docs.length).toBe(46);
    for (const [i, d] of docs.entries()) expectSameIds(tok512, ref512, d, true, `document ${i + 1}`);
    expectSameIds(tok512, ref512, text, false, 'valid-head.txt whole');
  });

  it.skipIf(!existsSync(SHAKESPEARE))(`all of Tiny Shakespeare in 5k-character pieces${existsSync(SHAKESPEARE) ? '' : ' (skipped: ../shared/data/tinyshakespeare/input.txt is absent)'}`, () => {
    const parts = chunks(readFileSync(SHAKESPEARE, 'utf8'), 5_000);
    expect(parts.join('').length).toBe(1_115_394);
    for (const [i, p] of parts.entries()) expectSameIds(tok512, ref512, p, true, `piece ${i}`);
  }, 120_000);

  it('tok512 on 300 seeded random byte strings (invalid UTF-8 read as U+FFFD) and random unicode', () => {
    const u = rng(21);
    const pick = (s: string) => s[Math.floor(u() * s.length)]!;
    const letters = 'etaoin shrdlu.,!?\n\'"ETAOINSHRDLU';
    for (let c = 0; c < 300; c++) {
      const len = Math.floor(u() * 400);
      let text: string;
      if (c % 3 === 0) {
        text = Buffer.from(Array.from({ length: len }, () => Math.floor(u() * 256))).toString('utf8');
      } else if (c % 3 === 1) {
        // codepoints from every UTF-8 length, mixed with text the vocabulary merges
        text = Array.from({ length: len }, () => (u() < 0.7 ? pick(letters) : String.fromCodePoint(Math.floor(u() ** 3 * 0x10ffff) & ~0x800 | 0x20))).join('');
      } else {
        text = Array.from({ length: len }, () => pick(letters)).join('');
      }
      expectSameIds(tok512, ref512, text, c % 2 === 0, `case ${c}`);
    }
  });

  it('300 seeded random vocabularies with tied scores, multi-byte pieces, a BOS merge and unmergeable scores', () => {
    const u = rng(7);
    const int = (n: number) => Math.floor(u() * n);
    const alphabet = ['a', 'b', 'c', ' ', '\n', 'é', '中', '🙂'];
    for (let c = 0; c < 300; c++) {
      // single characters (some left out, so their bytes fall back), then concatenations of pieces
      const pieces: string[] = alphabet.filter(() => u() < 0.85);
      const extra = 5 + int(60);
      for (let k = 0; k < extra; k++) {
        const a = pieces.length && u() < 0.9 ? pieces[int(pieces.length)]! : alphabet[int(alphabet.length)]!;
        const b = pieces.length && u() < 0.9 ? pieces[int(pieces.length)]! : alphabet[int(alphabet.length)]!;
        pieces.push(a + b);
      }
      if (u() < 0.2) pieces.push('\n<s>\n ');
      // few distinct scores make ties common; −1e10 and below never merge (run.c's starting best)
      const scored = pieces.map((p): [string, number] => [p, u() < 0.05 ? -1e10 * (1 + int(2)) : -int(4)]);
      const bin = tokenizerBin(scored);
      const path = join(tmp.dir, `v${c}.bin`);
      writeFileSync(path, bin);
      const fast = Llama2cTokenizer.read(path);
      const ref = new ReferenceLlama2cEncoder(bin);
      for (let t = 0; t < 3; t++) {
        const text = Array.from({ length: int(120) }, () => alphabet[int(alphabet.length)]!).join('');
        expectSameIds(fast, ref, text, t !== 1, `vocabulary ${c}, text ${t}`);
      }
    }
  });

  it('a 1.1 MB text encodes in under 5 s even on a loaded machine (the O(n²) encoder took over 10 minutes)', () => {
    // Tiny Shakespeare when present, else valid-head.txt repeated to the same length
    const text = existsSync(SHAKESPEARE) ? readFileSync(SHAKESPEARE, 'utf8') : readFileSync(join(ROOT, 'fixtures/tinystories/valid-head.txt'), 'utf8').repeat(35);
    const t0 = performance.now();
    const ids = tok512.encode(text, { bos: true });
    const s = (performance.now() - t0) / 1000;
    expect(ids.length).toBeGreaterThan(text.length / 3);
    expect(s).toBeLessThan(5); // measured 0.5 CPU s, 1.2 s wall at load average 10 on 2 cores
  }, 30_000);
});
