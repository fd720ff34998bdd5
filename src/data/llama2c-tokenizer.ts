import { basename } from 'node:path';
import { UserError } from '../errors.js';
import { INPUT_LIMITS, readInputFile } from '../util/read-file.js';
import { mergeBestPairs, mergeRanks } from './bpe-merge.js';
import type { Tokenizer } from './tokenizer-types.js';

/**
 * llama2.c `tokenizer.bin` (int32 max_token_length, then per token: float32 score, int32 length,
 * bytes; the file carries no count, so the vocabulary is every record up to EOF unless a size is
 * given) with llama2.c's `encode()` from run.c: optional BOS (id 1), a dummy-prefix " " piece when
 * the text is non-empty, each UTF-8 codepoint looked up whole or else byte-fallback ids (byte + 3),
 * then the adjacent pair whose concatenation is a vocabulary piece with the best score is merged,
 * repeatedly (the first pair on ties), until no pair merges (src/data/bpe-merge.ts, O(n log n)).
 *
 * Pieces are compared as raw bytes, as run.c's strcmp does: internally each piece is a "binary"
 * string with one char per byte (latin1), so concatenation and lookup match C exactly even for
 * pieces that are not valid UTF-8 on their own.
 */
export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId = 1;
  readonly eosId = 2;
  /** pieces as text (UTF-8 decoded), for display and for building other tokenizer formats */
  readonly pieces: string[];
  private readonly raw: string[];
  private readonly ids = new Map<string, number>();
  private readonly pairs = new Map<number, number>();
  private readonly ranks: Int32Array;

  constructor(
    rawPieces: Uint8Array[],
    readonly scores: Float32Array,
    readonly path: string,
    readonly maxTokenLength: number,
  ) {
    this.vocabSize = rawPieces.length;
    this.raw = rawPieces.map((b) => Buffer.from(b).toString('latin1'));
    this.pieces = rawPieces.map((b) => Buffer.from(b).toString('utf8'));
    this.ranks = mergeRanks(scores);
    // first occurrence wins (run.c's bsearch over sorted pieces finds one of equal ones)
    this.raw.forEach((p, i) => {
      if (!this.ids.has(p)) this.ids.set(p, i);
    });
  }

  /** Reads `vocabSize` records when given (trailing bytes are ignored, as run.c does), else every record to EOF. */
  static read(path: string, vocabSize?: number): Llama2cTokenizer {
    const buf = readInputFile(path, 'tokenizer', { maxBytes: INPUT_LIMITS.tokenizer, field: 'tokenizer' });
    const fail = (why: string) => new UserError(`${path}: not a llama2.c tokenizer.bin (${why})`);
    if (buf.byteLength < 4) throw fail('file shorter than its 4-byte header');
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const maxLen = view.getInt32(0, true);
    if (maxLen <= 0 || maxLen > 4096) throw fail(`max_token_length ${maxLen}`);
    const pieces: Uint8Array[] = [];
    const scores: number[] = [];
    let off = 4;
    while (vocabSize === undefined ? off < buf.byteLength : pieces.length < vocabSize) {
      if (off + 8 > buf.byteLength) {
        throw fail(vocabSize === undefined ? `truncated record at byte ${off}` : `${pieces.length} tokens, expected ${vocabSize}`);
      }
      const score = view.getFloat32(off, true);
      const len = view.getInt32(off + 4, true);
      if (!Number.isFinite(score)) throw fail(`token ${pieces.length} has score ${score} at byte ${off}`);
      off += 8;
      if (len < 0 || len > maxLen || off + len > buf.byteLength) throw fail(`token ${pieces.length} has length ${len} at byte ${off - 4}`);
      pieces.push(buf.subarray(off, off + len));
      scores.push(score);
      off += len;
    }
    if (pieces.length < 259) throw fail(`${pieces.length} tokens, fewer than the 3 specials and 256 byte pieces`);
    return new Llama2cTokenizer(pieces, Float32Array.from(scores), path, maxLen);
  }

  get describe(): string {
    return `llama2.c ${basename(this.path)} (${this.vocabSize} tokens)`;
  }

  encode(text: string, opts: { bos: boolean }): number[] {
    const out: number[] = opts.bos ? [this.bosId] : [];
    const bytes = Buffer.from(text, 'utf8');
    // dummy prefix: the " " piece when the text is non-empty
    if (bytes.length > 0) {
      const prefix = this.ids.get(' ');
      if (prefix !== undefined) out.push(prefix);
    }
    // codepoints: a lead byte and its continuation bytes (at most 4), looked up whole, else byte fallback
    for (let i = 0; i < bytes.length; ) {
      let j = i + 1;
      while (j < bytes.length && (bytes[j]! & 0xc0) === 0x80 && j - i < 4) j++;
      const id = this.ids.get(bytes.toString('latin1', i, j));
      if (id !== undefined) out.push(id);
      else for (let k = i; k < j; k++) out.push(bytes[k]! + 3);
      i = j;
    }
    // merge the best-scoring adjacent pair until none merges (BOS included, as in run.c)
    return mergeBestPairs(out, this.pairId, this.ranks);
  }

  /** The raw bytes of piece `id` as the file stores them (run.c compares these). */
  pieceBytes(id: number): Buffer {
    return Buffer.from(this.raw[id]!, 'latin1');
  }

  /** The piece whose bytes are piece a's followed by piece b's, or -1 (memoised by id pair). */
  private readonly pairId = (a: number, b: number): number => {
    const key = a * this.vocabSize + b;
    let id = this.pairs.get(key);
    if (id === undefined) {
      id = this.ids.get(this.raw[a]! + this.raw[b]!) ?? -1;
      this.pairs.set(key, id);
    }
    return id;
  };

  /** Concatenated piece bytes as UTF-8; `<0xXX>` pieces are that byte (as run.c's decode), BOS/EOS/UNK are dropped. */
  decode(ids: number[]): string {
    const parts: Buffer[] = [];
    for (const id of ids) {
      if (id < 0 || id >= this.vocabSize) throw new UserError(`${this.path}: token id ${id} is outside the ${this.vocabSize}-token vocabulary`);
      if (id < 3) continue;
      const piece = this.raw[id]!;
      const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
      parts.push(byte ? Buffer.of(parseInt(byte[1]!, 16)) : Buffer.from(piece, 'latin1'));
    }
    return Buffer.concat(parts).toString('utf8');
  }
}
