import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { UserError } from '../errors.js';
import { readInputFile } from '../model/onnx-io.js';
import type { Tokenizer } from './tokenizer.js';

/** A Hugging Face `tokenizer.json` (with `tokenizer_config.json` beside it when present), run by @huggingface/tokenizers. */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  private readonly bosId?: number;

  private constructor(
    private readonly lib: HfLibTokenizer,
    readonly path: string,
    bosToken: string | undefined,
  ) {
    const vocab = lib.get_vocab(true);
    let max = -1;
    for (const id of vocab.values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    this.bosId = bosToken !== undefined ? vocab.get(bosToken) : undefined;
  }

  static read(path: string): HfTokenizer {
    const parse = (p: string) => {
      try {
        return JSON.parse(readInputFile(p, 'tokenizer').toString('utf8'));
      } catch (e) {
        if (e instanceof UserError) throw e;
        throw new UserError(`${p}: not valid JSON (${(e as Error).message.split('\n')[0]})`);
      }
    };
    const json = parse(path);
    if (!json || typeof json !== 'object' || !json.model) throw new UserError(`${path}: not a Hugging Face tokenizer.json (no "model" field)`);
    const configPath = join(dirname(path), 'tokenizer_config.json');
    const config = existsSync(configPath) ? JSON.parse(readFileSync(configPath, 'utf8')) : {};
    let lib: HfLibTokenizer;
    try {
      lib = new HfLibTokenizer(json, config);
    } catch (e) {
      throw new UserError(`${path}: the tokenizer library cannot load it (${(e as Error).message.split('\n')[0]})`);
    }
    const bos = typeof config.bos_token === 'string' ? config.bos_token : config.bos_token?.content;
    return new HfTokenizer(lib, path, bos);
  }

  get describe(): string {
    return `tokenizer.json ${basename(dirname(this.path))}/${basename(this.path)} (${this.vocabSize} tokens)`;
  }

  encode(text: string, opts: { bos: boolean }): number[] {
    const ids = this.lib.encode(text, { add_special_tokens: false }).ids;
    return opts.bos && this.bosId !== undefined ? [this.bosId, ...ids] : ids;
  }

  decode(ids: number[]): string {
    return this.lib.decode(ids);
  }
}
