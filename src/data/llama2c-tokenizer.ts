import { UserError } from '../errors.js';
import { readInputFile } from '../model/onnx-io.js';
import type { Tokenizer } from './tokenizer.js';

/**
 * llama2.c `tokenizer.bin` (int32 max_token_length, then per token: float32 score, int32 length,
 * bytes) with llama2.c's `encode`: optional BOS (id 1), a dummy-prefix " " piece, each UTF-8
 * codepoint looked up whole or else byte-fallback ids (byte + 3), then the adjacent pair whose
 * concatenation is a vocabulary piece with the best score is merged, repeatedly (first on ties).
 */
export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  private readonly ids = new Map<string, number>();

  constructor(
    readonly pieces: string[],
    readonly scores: Float32Array,
    readonly path: string,
  ) {
    this.vocabSize = pieces.length;
    // first occurrence wins, as llama2.c's sorted lookup finds an equal piece
    pieces.forEach((p, i) => {
      if (!this.ids.has(p)) this.ids.set(p, i);
    });
  }

  static read(path: string): Llama2cTokenizer {
    const buf = readInputFile(path, 'tokenizer');
    const fail = (why: string) => new UserError(`${path}: not a llama2.c tokenizer.bin (${why})`);
    if (buf.byteLength < 4) throw fail('file shorter than its 4-byte header');
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const maxLen = view.getInt32(0, true);
    if (maxLen <= 0 || maxLen > 1024) throw fail(`max_token_length ${maxLen}`);
    const pieces: string[] = [];
    const scores: number[] = [];
    const decoder = new TextDecoder('utf-8');
    let off = 4;
    while (off < buf.byteLength) {
      if (off + 8 > buf.byteLength) throw fail(`truncated record at byte ${off}`);
      const score = view.getFloat32(off, true);
      const len = view.getInt32(off + 4, true);
      off += 8;
      if (len < 0 || len > maxLen || off + len > buf.byteLength) throw fail(`token ${pieces.length} has length ${len} at byte ${off - 4}`);
      pieces.push(decoder.decode(buf.subarray(off, off + len)));
      scores.push(score);
      off += len;
    }
    if (pieces.length < 259) throw fail(`${pieces.length} tokens, fewer than the 3 specials and 256 byte pieces`);
    return new Llama2cTokenizer(pieces, Float32Array.from(scores), path);
  }

  get describe(): string {
    return `llama2.c ${this.path.split('/').pop()} (${this.vocabSize} tokens)`;
  }

  encode(text: string, opts: { bos: boolean }): number[] {
    const tokens: number[] = [];
    if (opts.bos) tokens.push(1);
    const out: number[] = [];
    if (text.length > 0) {
      const prefix = this.ids.get(' ');
      if (prefix !== undefined) out.push(prefix);
    }
    for (const ch of text) {
      const id = this.ids.get(ch);
      if (id !== undefined) out.push(id);
      else for (const byte of Buffer.from(ch, 'utf8')) out.push(byte + 3);
    }
    // merge the best-scoring adjacent pair until none merges
    for (;;) {
      let best = -1e10;
      let bestId = -1;
      let bestIdx = -1;
      for (let i = 0; i < out.length - 1; i++) {
        const id = this.ids.get(this.pieces[out[i]!]! + this.pieces[out[i + 1]!]!);
        if (id !== undefined && this.scores[id]! > best) {
          best = this.scores[id]!;
          bestId = id;
          bestIdx = i;
        }
      }
      if (bestIdx === -1) break;
      out.splice(bestIdx, 2, bestId);
    }
    return tokens.concat(out);
  }

  decode(ids: number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      if (id < 3) continue;
      if (id < 259) bytes.push(id - 3);
      else bytes.push(...Buffer.from(this.pieces[id]!, 'utf8'));
    }
    return Buffer.from(bytes).toString('utf8');
  }
}
