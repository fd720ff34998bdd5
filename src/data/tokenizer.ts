import { extname } from 'node:path';
import { UserError } from '../errors.js';
import { readInputRange } from '../util/read-file.js';
import { HfTokenizer } from './hf-tokenizer.js';
import { Llama2cTokenizer } from './llama2c-tokenizer.js';
import type { Tokenizer } from './tokenizer-types.js';

export type { Tokenizer };

/**
 * A Hugging Face `tokenizer.json` (a .json file, or any file whose first non-blank byte is `{`) or a
 * llama2.c `tokenizer.bin` (a .bin file, or a binary file whose int32 header is a plausible
 * max_token_length). A SentencePiece .model is refused with the conversion to use.
 */
export function loadTokenizer(path: string): Tokenizer {
  const ext = extname(path).toLowerCase();
  if (ext === '.json') return HfTokenizer.read(path);
  if (ext === '.bin') return Llama2cTokenizer.read(path);
  if (ext === '.model') {
    throw new UserError(`${path}: SentencePiece .model files are not read directly; use the llama2.c tokenizer.bin exported from it (llama2.c tokenizer.py) or a Hugging Face tokenizer.json`);
  }
  const head = readInputRange(path, 'tokenizer', 0, 64, 'tokenizer');
  const first = head.find((b) => b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d && b !== 0xef && b !== 0xbb && b !== 0xbf);
  if (first === 0x7b) return HfTokenizer.read(path);
  if (head.length >= 12) {
    const maxLen = head.readInt32LE(0);
    const len0 = head.readInt32LE(8);
    if (maxLen > 0 && maxLen <= 4096 && len0 >= 0 && len0 <= maxLen) return Llama2cTokenizer.read(path);
  }
  throw new UserError(`${path}: unknown tokenizer format; use a llama2.c tokenizer.bin or a Hugging Face tokenizer.json`);
}
