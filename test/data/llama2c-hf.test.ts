import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AutoTokenizer, env } from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HfTokenizer } from '../../src/data/hf-tokenizer.js';
import { llama2cToHf } from '../../src/data/llama2c-hf.js';
import { Llama2cTokenizer } from '../../src/data/llama2c-tokenizer.js';
import { UserError } from '../../src/errors.js';
import { seededRandom } from '../../src/util/random.js';
import { FIXTURES, itWithShared, sharedPath, tempDir } from '../helpers.js';
import { tokenizerBin } from './build.js';

/**
 * tokenizer.json written from a llama2.c tokenizer.bin gives run.c's ids (Llama2cTokenizer, itself
 * checked against an independent reference encoder) through both Hugging Face tokenizer runtimes pare
 * meets: @huggingface/tokenizers (pare's HfTokenizer) and transformers.js's AutoTokenizer.
 */

const tmp = tempDir('pare-tokjson-');
afterAll(() => tmp.cleanup());

/** tokenizer.json + tokenizer_config.json of `bin` in a folder of their own. */
function convert(bin: string, name: string): { dir: string; warnings: string[] } {
  const dir = join(tmp.dir, name);
  mkdirSync(dir, { recursive: true });
  const files = llama2cToHf(Llama2cTokenizer.read(bin));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(files.config));
  return { dir, warnings: files.warnings };
}

type Encoder = (text: string) => number[];

/** Texts whose ids differ between `reference` and `candidate`, at most a few shown. */
function mismatches(texts: Iterable<string>, reference: Encoder, candidate: Encoder): { count: number; shown: string[]; checked: number } {
  let count = 0;
  let checked = 0;
  const shown: string[] = [];
  for (const t of texts) {
    checked++;
    const want = reference(t);
    const got = candidate(t);
    if (want.length !== got.length || want.some((id, i) => id !== got[i])) {
      count++;
      if (shown.length < 3) shown.push(`${JSON.stringify(t)}: run.c ${want.join(',')} vs ${got.join(',')}`);
    }
  }
  return { count, shown, checked };
}

const SPACE_LIKE = [' ', ' ', ' ', '\n', '\t', '  '];
const ASCII = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?;:\'"-()[]{}<>/\\@#$%^&*_+=~`|'];
const UNICODE = ['é', 'ü', 'ß', 'ñ', 'ğ', 'Ω', 'ж', 'ا', 'हि', '中', '文', '字', 'あ', '한', '🙂', '🚀', '👍🏽', '\u0301', '\u200d', '\u00a0', '€', '—', '…', '\u0000', '\u0007', '\u007f', '\ufeff', '\ud800'];

/**
 * Seeded random strings: characters drawn from ASCII, spaces and line breaks, many scripts, emoji,
 * control characters and a lone surrogate; or the vocabulary's own pieces run together, which puts
 * the merges in competition. Never U+2581 or the spellings of the special tokens (see llama2c-hf.ts).
 */
function randomTexts(seed: number, count: number, pieces: string[]): string[] {
  const r = seededRandom(seed);
  const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)]!;
  const texts: string[] = [];
  for (let k = 0; k < count; k++) {
    const length = Math.floor(r() * 48);
    const mode = k % 3;
    let s = '';
    for (let i = 0; i < length; i++) {
      const kind = mode === 0 ? r() : mode === 1 ? 2 : r() * 3;
      s += kind < 0.45 ? pick(ASCII) : kind < 0.7 ? pick(SPACE_LIKE) : kind < 1 ? pick(UNICODE) : pick(pieces);
    }
    texts.push(s);
  }
  return texts;
}

describe('tokenizer.json from llama2.c tok512.bin', () => {
  const tok = Llama2cTokenizer.read(FIXTURES.tok512);
  const runc: Encoder = (t) => tok.encode(t, { bos: true });
  const { dir, warnings } = convert(FIXTURES.tok512, 'tok512');
  const hf = HfTokenizer.read(join(dir, 'tokenizer.json'));
  const viaHf: Encoder = (t) => hf.encode(t, { bos: true });
  let tjs: Awaited<ReturnType<typeof AutoTokenizer.from_pretrained>>;
  // transformers.js adds BOS itself (add_bos_token in tokenizer_config.json)
  const viaTjs: Encoder = (t) => tjs.encode(t);
  const stories = readFileSync(FIXTURES.validHead, 'utf8').split('<|endoftext|>');
  const lines = stories.flatMap((s) => s.split('\n'));
  const pieces = tok.pieces.slice(259);

  beforeAll(async () => {
    env.allowRemoteModels = false;
    env.localModelPath = '/';
    tjs = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
  });

  it('keeps every id: specials, 256 byte pieces, then the pieces with ▁ for spaces', () => {
    const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
    const vocab: Record<string, number> = json.model.vocab;
    expect(Object.keys(vocab)).toHaveLength(512);
    expect([vocab['<unk>'], vocab['<s>'], vocab['</s>'], vocab['<0x00>'], vocab['<0xFF>']]).toEqual([0, 1, 2, 3, 258]);
    expect(vocab['▁Once']).toBe(403);
    expect(json.model.byte_fallback).toBe(true);
    expect(json.added_tokens.map((t: { content: string; special: boolean }) => [t.content, t.special])).toEqual([['<unk>', true], ['<s>', true], ['</s>', true]]);
    // every merge spells a vocabulary piece from two vocabulary pieces
    for (const [l, r] of json.model.merges as [string, string][]) expect(vocab[l]! >= 0 && vocab[r]! >= 0 && vocab[l + r]! >= 0).toBe(true);
    expect(warnings).toEqual([]);
    expect(hf.bosId).toBe(1);
    expect(hf.eosId).toBe(2);
  });

  it('"Once upon a time" is BOS, ▁Once, ▁upon, ▁a, ▁time in both runtimes', () => {
    expect(viaHf('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    expect(viaTjs('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    expect(viaHf('')).toEqual([1]);
    expect(viaTjs('')).toEqual([1]);
  });

  it("equals run.c's ids on every line and every whole story of valid-head.txt", () => {
    for (const texts of [lines, stories]) {
      for (const encode of [viaHf, viaTjs]) {
        const m = mismatches(texts, runc, encode);
        expect(m.shown, `${m.count} of ${m.checked} texts differ`).toEqual([]);
      }
    }
    expect(lines.length).toBeGreaterThan(150);
  });

  itWithShared("equals run.c's ids on every line of tinyshakespeare/input.txt", () => {
    const shakespeare = readFileSync(sharedPath('data/tinyshakespeare/input.txt'), 'utf8').split('\n');
    expect(shakespeare.length).toBeGreaterThan(40_000);
    for (const encode of [viaHf, viaTjs]) {
      const m = mismatches(shakespeare, runc, encode);
      expect(m.shown, `${m.count} of ${m.checked} lines differ`).toEqual([]);
    }
  }, 60_000);

  it("equals run.c's ids on 6,000 seeded random strings (scripts, emoji, bytes, spaces, runs of vocabulary pieces)", () => {
    const texts = randomTexts(18, 6000, pieces);
    for (const encode of [viaHf, viaTjs]) {
      const m = mismatches(texts, runc, encode);
      expect(m.shown, `${m.count} of ${m.checked} strings differ`).toEqual([]);
    }
  });

  it('decodes its ids back to the text (the dummy-prefix space dropped, as run.c drops it)', () => {
    // a lone surrogate encodes as U+FFFD's bytes; the library's byte-fallback decoder (a TextDecoder)
    // drops a U+FEFF that starts a run of byte pieces
    const texts = [...stories.slice(0, 10), ...randomTexts(19, 1000, pieces)].filter((t) => t.length > 0 && !t.includes('\ud800') && !t.includes('\ufeff'));
    for (const t of texts) {
      expect(hf.decode(viaHf(t))).toBe(t);
      expect(tjs.decode(viaTjs(t), { skip_special_tokens: true })).toBe(t);
      // pare's llama2.c decoder keeps the dummy prefix
      expect(tok.decode(runc(t))).toBe(` ${t}`);
    }
  });
});

describe('tokenizer.json from small llama2.c vocabularies', () => {
  const build = (name: string, extra: [string, number][]) => {
    const bin = join(tmp.dir, `${name}.bin`);
    writeFileSync(bin, tokenizerBin(extra));
    const { dir, warnings } = convert(bin, name);
    return { tok: Llama2cTokenizer.read(bin), hf: HfTokenizer.read(join(dir, 'tokenizer.json')), warnings };
  };

  it('merges the best-scoring piece anywhere first, not the leftmost pair, as run.c does', () => {
    const { tok, hf, warnings } = build('best-first', [[' ', -10], ['a', -10], ['b', -10], ['c', -10], ['ab', -5], ['bc', -1], ['abc', -2], ['x', -10], ['y', -10], ['xy', -3], ['yx', -4], ['xyx', -6]]);
    expect(warnings).toEqual([]);
    for (const t of ['abc', 'ab c', 'abcabc', 'xyx', 'yxyxy', 'xyxyx abcab', 'cba']) expect(hf.encode(t, { bos: true })).toEqual(tok.encode(t, { bos: true }));
    expect(tok.encode('abc', { bos: false }).map((i) => tok.pieces[i])).toEqual([' ', 'abc']);
  });

  it('orders a piece with a period so the left of two overlapping pairs merges first', () => {
    // "aba" has period 2: [ab, a, ba] holds the pairs (ab, a) and (a, ba), both spelling "aba"
    const { tok, hf, warnings } = build('period', [[' ', -20], ['a', -20], ['b', -20], ['ba', -1], ['ab', -2], ['aba', -3], ['c', -20], ['cab', -4], ['ca', -5]]);
    expect(warnings).toEqual([]);
    const texts = ['aba', 'ababa', 'abbaba', 'cababa', 'ca ba', 'babab', 'abababab'];
    for (const t of texts) expect(hf.encode(t, { bos: true }), t).toEqual(tok.encode(t, { bos: true }));
    const r = seededRandom(3);
    for (let k = 0; k < 500; k++) {
      const t = Array.from({ length: Math.floor(r() * 16) }, () => 'abc '[Math.floor(r() * 4)]).join('');
      expect(hf.encode(t, { bos: true }), t).toEqual(tok.encode(t, { bos: true }));
    }
  });

  it('warns when a piece has two periods or pieces share a score', () => {
    const { warnings } = build('warn', [[' ', -20], ['a', -20], ['aa', -1], ['aaa', -2], ['b', -20], ['c', -20], ['bc', -3], ['cb', -3]]);
    expect(warnings.join('\n')).toMatch(/1 pieces repeat with two periods \("aaa"\)/);
    expect(warnings.join('\n')).toMatch(/2 mergeable pieces share a score with another \("bc", "cb"\)/);
  });

  it('refuses a tokenizer.bin whose specials or byte pieces are not llama2.c\'s, naming the piece', () => {
    const bin = join(tmp.dir, 'bad.bin');
    const bytes = Buffer.from(tokenizerBin([[' ', -1]]));
    // piece 1 "\n<s>\n" → "\n<S>\n"
    bytes[4 + 8 + 5 + 8 + 2] = 'S'.charCodeAt(0);
    writeFileSync(bin, bytes);
    expect(() => llama2cToHf(Llama2cTokenizer.read(bin))).toThrow(UserError);
    expect(() => llama2cToHf(Llama2cTokenizer.read(bin))).toThrow(/piece 1 "\\n<S>\\n" is not llama2.c's "\\n<s>\\n"/);
  });
});
