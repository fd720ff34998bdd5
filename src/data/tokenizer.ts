import { extname } from 'node:path';
import { UserError } from '../errors.js';
import { HfTokenizer } from './hf-tokenizer.js';
import { Llama2cTokenizer } from './llama2c-tokenizer.js';

export interface Tokenizer {
  readonly vocabSize: number;
  /** one line for dataset descriptions */
  readonly describe: string;
  encode(text: string, opts: { bos: boolean }): number[];
  decode(ids: number[]): string;
}

/** llama2.c `tokenizer.bin`, or a Hugging Face `tokenizer.json`. */
export function loadTokenizer(path: string): Tokenizer {
  const ext = extname(path).toLowerCase();
  if (ext === '.json') return HfTokenizer.read(path);
  if (ext === '.bin') return Llama2cTokenizer.read(path);
  throw new UserError(`${path}: unknown tokenizer format '${ext || '(none)'}'; use a llama2.c tokenizer.bin or a Hugging Face tokenizer.json`);
}
