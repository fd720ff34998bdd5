import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HfTokenizer } from '../../src/data/hf-tokenizer.js';
import { Llama2cTokenizer } from '../../src/data/llama2c-tokenizer.js';
import { loadTokenizer } from '../../src/data/tokenizer.js';
import { UserError } from '../../src/errors.js';
import { FIXTURES, itWithShared, sharedPath, tempDir } from '../helpers.js';
import { charTokenizerJson, llamaTokenizerJson, tokenizerBin } from './build.js';

const tmp = tempDir('pare-tok-');
afterAll(() => tmp.cleanup());
const file = (name: string, bytes: string | Uint8Array) => {
  const p = join(tmp.dir, name);
  writeFileSync(p, bytes);
  return p;
};
const TOK = FIXTURES.tok512;
const stories = () => readFileSync(FIXTURES.validHead, 'utf8').split('<|endoftext|>').map((d) => d.trim()).filter(Boolean);

describe('llama2.c tokenizer.bin', () => {
  const tok = Llama2cTokenizer.read(TOK);

  it('reads every record to EOF: tok512.bin has 512 tokens', () => {
    expect(tok.vocabSize).toBe(512);
    expect(tok.pieces.slice(0, 4)).toEqual(['<unk>', '\n<s>\n', '\n</s>\n', '<0x00>']);
  });

  it('"Once upon a time" is BOS, " Once", " upon", " a", " time"', () => {
    const ids = tok.encode('Once upon a time', { bos: true });
    expect(ids).toEqual([1, 403, 407, 261, 378]);
    expect(ids.map((i) => tok.pieces[i])).toEqual(['\n<s>\n', ' Once', ' upon', ' a', ' time']);
    expect(tok.decode(ids)).toBe(' Once upon a time');
  });

  it('short strings decode back to the text with the dummy-prefix space', () => {
    for (const s of ['Lily saw a big dog.', 'Tom said, "Hi!"\n\nThe end.', 'naïve 🙂 ü']) {
      const ids = tok.encode(s, { bos: false });
      expect(ids[0]).not.toBe(1);
      expect(tok.decode(ids)).toBe(` ${s}`);
    }
    expect(tok.encode('', { bos: true })).toEqual([1]);
    expect(tok.encode('', { bos: false })).toEqual([]);
  });

  it('codepoints outside the vocabulary fall back to byte ids (byte + 3)', () => {
    const ids = tok.encode('🙂', { bos: false });
    expect(ids.slice(1)).toEqual([...Buffer.from('🙂', 'utf8')].map((b) => b + 3));
  });

  it('merges the best-scoring pair anywhere first, the leftmost on ties', () => {
    const path = file('tiny.bin', tokenizerBin([[' ', -10], ['a', -10], ['b', -10], ['c', -10], ['ab', -5], ['bc', -1], ['abc', -2], ['x', -10], ['y', -10], ['xy', -3], ['yx', -3], ['é', -10]]));
    const t = Llama2cTokenizer.read(path);
    const id = (p: string) => t.pieces.indexOf(p);
    // left-to-right merging would take "ab" first; the best score ("bc", then "abc") wins
    expect(t.encode('abc', { bos: true })).toEqual([1, id(' '), id('abc')]);
    expect(t.encode('xyx', { bos: false })).toEqual([id(' '), id('xy'), id('x')]);
    // a multi-byte codepoint in the vocabulary is one piece; one outside it is its bytes
    expect(t.encode('éü', { bos: false })).toEqual([id(' '), id('é'), 0xc3 + 3, 0xbc + 3]);
    expect(t.decode(t.encode('abcéü', { bos: true }))).toBe(' abcéü');
  });

  it('reads a given vocabulary size and ignores what follows, as run.c does', () => {
    const bytes = tokenizerBin([[' ', -1], ['a', -2]]);
    const t = Llama2cTokenizer.read(file('sized.bin', Buffer.concat([bytes, Buffer.from('trailing')])), 260);
    expect(t.vocabSize).toBe(260);
    expect(() => Llama2cTokenizer.read(file('sized2.bin', bytes), 300)).toThrow(/sized2\.bin: not a llama2.c tokenizer.bin \(261 tokens, expected 300\)/);
  });

  it('truncated, garbled and too-small files are user errors naming the file', () => {
    const whole = readFileSync(TOK);
    const cases: [string, Uint8Array, RegExp][] = [
      ['tok-truncated.bin', whole.subarray(0, 1000), /tok-truncated\.bin: not a llama2.c tokenizer.bin \((truncated record|token \d+ has length)/],
      ['tok-empty.bin', new Uint8Array(2), /tok-empty\.bin: not a llama2.c tokenizer.bin \(file shorter/],
      ['tok-header.bin', Buffer.from('hello world, this is text'), /tok-header\.bin: not a llama2.c tokenizer.bin \(max_token_length/],
      ['tok-small.bin', tokenizerBin([]).subarray(0, 4 + 8 * 200 + 700), /tok-small\.bin: not a llama2.c tokenizer.bin/],
    ];
    const garbled = Buffer.from(whole);
    garbled.writeInt32LE(-5, 4 + 4); // length of token 0
    cases.push(['tok-garbled.bin', garbled, /tok-garbled\.bin: not a llama2.c tokenizer.bin \(token 0 has length -5/]);
    const nan = Buffer.from(whole);
    nan.writeFloatLE(Number.NaN, 4);
    cases.push(['tok-nan.bin', nan, /tok-nan\.bin: not a llama2.c tokenizer.bin \(token 0 has score NaN/]);
    for (const [name, bytes, re] of cases) {
      const p = file(name, bytes);
      expect(() => Llama2cTokenizer.read(p), name).toThrow(UserError);
      expect(() => Llama2cTokenizer.read(p), name).toThrow(re);
    }
    expect(() => Llama2cTokenizer.read(join(tmp.dir, 'missing.bin'))).toThrow(/missing\.bin: no such tokenizer/);
  });
});

describe('Hugging Face tokenizer.json', () => {
  itWithShared('a character-level tokenizer for shakespeare-char encodes text to the vocab.json ids', () => {
    const chars: string[] = JSON.parse(readFileSync(sharedPath('models/shakespeare-char/vocab.json'), 'utf8'));
    const tok = HfTokenizer.read(file('char.json', JSON.stringify(charTokenizerJson(chars))));
    expect(tok.vocabSize).toBe(65);
    expect(tok.bosId).toBeUndefined();
    expect(tok.eosId).toBeUndefined();
    // the stored validation ids, decoded through vocab.json, encode back to themselves
    const stored = new Uint16Array(readFileSync(sharedPath('models/shakespeare-char/val.u16.bin')).buffer.slice(0, 600));
    const ids = Array.from(stored);
    const text = ids.map((i) => chars[i]).join('');
    expect(tok.encode(text, { bos: true })).toEqual(ids);
    expect(tok.encode('First Citizen:', { bos: false })).toEqual([...'First Citizen:'].map((c) => chars.indexOf(c)));
    expect(tok.decode(ids)).toBe(text);
  });

  it('a character-level tokenizer over the characters of valid-head.txt encodes a story to their ids, without BOS, and decodes it back', () => {
    const text = stories().slice(0, 3).join('\n\n');
    const chars = [...new Set(text)].sort();
    const tok = HfTokenizer.read(file('stories-chars.json', JSON.stringify(charTokenizerJson(chars))));
    expect(tok.vocabSize).toBe(chars.length);
    expect(tok.bosId).toBeUndefined();
    const ids = [...text].map((c) => chars.indexOf(c));
    expect(tok.encode(text, { bos: true })).toEqual(ids);
    expect(tok.encode('Once upon a time', { bos: false })).toEqual([...'Once upon a time'].map((c) => chars.indexOf(c)));
    expect(tok.decode(ids)).toBe(text);
  });

  it('a Llama-style BPE tokenizer.json built from tok512.bin encodes valid-head.txt to the llama2.c ids', () => {
    const l2c = Llama2cTokenizer.read(TOK);
    const hf = HfTokenizer.read(file('llama.json', JSON.stringify(llamaTokenizerJson(l2c))));
    expect(hf.vocabSize).toBe(512);
    expect(hf.bosId).toBe(1);
    expect([hf.eosId, l2c.eosId]).toEqual([2, 2]); // '</s>', as llama2.c's run.c stops on
    const docs = stories().slice(0, 12);
    for (const d of [...docs, 'naïve 🙂 x']) expect(hf.encode(d, { bos: true })).toEqual(l2c.encode(d, { bos: true }));
  });

  it('tokenizer_config.json beside it names the BOS and EOS tokens', () => {
    const chars = ['<|bos|>', 'a', 'b', '<|eos|>'];
    const dir = tempDir('pare-hfcfg-');
    try {
      writeFileSync(join(dir.dir, 'tokenizer.json'), JSON.stringify(charTokenizerJson(chars)));
      writeFileSync(join(dir.dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: { content: '<|bos|>' }, eos_token: '<|eos|>' }));
      const tok = HfTokenizer.read(join(dir.dir, 'tokenizer.json'));
      expect(tok.encode('ab', { bos: true })).toEqual([0, 1, 2]);
      expect(tok.eosId).toBe(3);
      writeFileSync(join(dir.dir, 'tokenizer_config.json'), '{oops');
      expect(() => HfTokenizer.read(join(dir.dir, 'tokenizer.json'))).toThrow(/tokenizer_config\.json: not valid JSON/);
    } finally {
      dir.cleanup();
    }
  });

  it('files that are not a tokenizer.json are user errors naming them', () => {
    expect(() => HfTokenizer.read(file('not-tok.json', '{"hello": 1}'))).toThrow(/not-tok\.json: not a Hugging Face tokenizer.json/);
    expect(() => HfTokenizer.read(file('broken.json', '{"model": '))).toThrow(/broken\.json: not valid JSON/);
  });
});

describe('loadTokenizer', () => {
  it('chooses by extension, else by content', () => {
    expect(loadTokenizer(TOK)).toBeInstanceOf(Llama2cTokenizer);
    expect(loadTokenizer(file('tok', readFileSync(TOK)))).toBeInstanceOf(Llama2cTokenizer);
    expect(loadTokenizer(file('tokenizer', JSON.stringify(charTokenizerJson(['a', 'b']))))).toBeInstanceOf(HfTokenizer);
  });

  it('unknown formats are user errors naming the file', () => {
    expect(() => loadTokenizer(file('vocab.txt', 'a\nb\nc\n'))).toThrow(/vocab\.txt: unknown tokenizer format/);
    expect(() => loadTokenizer(file('tok512.model', 'x'))).toThrow(/tok512\.model: SentencePiece \.model files are not read directly/);
  });
});
