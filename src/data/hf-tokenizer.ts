import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { UserError } from '../errors.js';
import { INPUT_LIMITS, readInputFile } from '../util/read-file.js';
import type { Tokenizer } from './tokenizer-types.js';

/** BOS and EOS spellings tried, in order, when tokenizer_config.json does not name them. */
const BOS_GUESSES = ['<s>', '<|begin_of_text|>', '<bos>', '<|startoftext|>'];
const EOS_GUESSES = ['</s>', '<|endoftext|>', '<|end_of_text|>', '<eos>'];

/**
 * A Hugging Face `tokenizer.json`, run by @huggingface/tokenizers (the JS port of the Rust
 * library). `tokenizer_config.json` beside it, when present, names the BOS token; otherwise the
 * first of BOS_GUESSES among the added tokens is used (EOS likewise). Encoding never adds the
 * tokenizer's own special tokens: BOS is added here, only when asked for.
 */
export class HfTokenizer implements Tokenizer {
  /** largest id (vocabulary and added tokens) + 1: the width a model's logits must have */
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;

  private constructor(
    private readonly lib: HfLibTokenizer,
    readonly path: string,
    bosToken: string | undefined,
    eosToken: string | undefined,
  ) {
    const vocab = lib.get_vocab(true);
    let max = -1;
    for (const id of vocab.values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    const bos = bosToken ?? BOS_GUESSES.find((t) => vocab.has(t));
    this.bosId = bos !== undefined ? vocab.get(bos) : undefined;
    const eos = eosToken ?? EOS_GUESSES.find((t) => vocab.has(t));
    this.eosId = eos !== undefined ? vocab.get(eos) : undefined;
  }

  static read(path: string): HfTokenizer {
    const json = readJson(path, 'tokenizer');
    if (!isObject(json) || !isObject(json.model)) throw new UserError(`${path}: not a Hugging Face tokenizer.json (no "model" object)`);
    const configPath = join(dirname(path), 'tokenizer_config.json');
    const config = existsSync(configPath) ? readJson(configPath, 'tokenizer config') : {};
    if (!isObject(config)) throw new UserError(`${configPath}: expected a JSON object`);
    let lib: HfLibTokenizer;
    try {
      lib = new HfLibTokenizer(json, config);
    } catch (e) {
      throw new UserError(`${path}: the tokenizer library cannot load it (${firstLine(e)})`);
    }
    const token = (t: unknown) => (typeof t === 'string' ? t : isObject(t) && typeof t.content === 'string' ? t.content : undefined);
    return new HfTokenizer(lib, path, token(config.bos_token), token(config.eos_token));
  }

  get describe(): string {
    return `tokenizer.json ${basename(dirname(this.path))}/${basename(this.path)} (${this.vocabSize} tokens)`;
  }

  encode(text: string, opts: { bos: boolean }): number[] {
    let ids: number[];
    try {
      ids = this.lib.encode(text, { add_special_tokens: false }).ids;
    } catch (e) {
      throw new UserError(`${this.path}: encoding failed (${firstLine(e)})`);
    }
    return opts.bos && this.bosId !== undefined ? [this.bosId, ...ids] : ids;
  }

  decode(ids: number[]): string {
    return this.lib.decode(ids, { skip_special_tokens: true });
  }
}

function readJson(path: string, what: string): unknown {
  const text = readInputFile(path, what, { maxBytes: INPUT_LIMITS.tokenizer, field: 'tokenizer' }).toString('utf8').replace(/^\uFEFF/, '');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path}: not valid JSON (${firstLine(e)})`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}
