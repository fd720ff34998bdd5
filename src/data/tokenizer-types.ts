export interface Tokenizer {
  /** ids run from 0 to vocabSize − 1; the model's logits must be this wide */
  readonly vocabSize: number;
  /** id prepended when encode is asked for BOS; undefined when the tokenizer has none */
  readonly bosId?: number;
  /** id that ends a generated text; undefined when the tokenizer has none */
  readonly eosId?: number;
  /** one line for dataset descriptions */
  readonly describe: string;
  encode(text: string, opts: { bos: boolean }): number[];
  decode(ids: number[]): string;
}
