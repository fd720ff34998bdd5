import { UserError } from '../errors.js';
import { mergeRanks } from './bpe-merge.js';
import type { Llama2cTokenizer } from './llama2c-tokenizer.js';

/**
 * A llama2.c `tokenizer.bin` as a Hugging Face `tokenizer.json` whose ids equal run.c's `encode`
 * (Llama2cTokenizer) through @huggingface/tokenizers and transformers.js:
 *
 * - vocabulary: the pieces with spaces written `▁` (U+2581, SentencePiece's convention), ids kept;
 *   `<unk>`, `<s>`, `</s>` at 0..2 as special added tokens, `<0xXX>` byte pieces at 3..258;
 * - normalizer: Prepend `▁` (run.c's dummy-prefix " " piece) then Replace " " → `▁`; no
 *   pre-tokenizer, so merges run across the whole text as run.c's do;
 * - BPE with `byte_fallback`: a codepoint outside the vocabulary becomes its UTF-8 byte pieces;
 * - merges: run.c merges the adjacent pair whose concatenation is the best-scoring piece (leftmost
 *   on ties); HF BPE merges the adjacent pair of lowest rank in the merge list (leftmost on ties).
 *   Listing every split (left, right) of every piece, pieces best score first, makes the two agree
 *   whenever the pairs competing at a step spell different pieces. Pairs spelling the same piece
 *   get different ranks here; they can compete only by overlapping, as [x, y, z] with x+y = y+z,
 *   where run.c takes the left pair: so a piece's splits are ordered so the split that leaves the
 *   shared piece on its right comes first (a piece P with period i: split i before split |P|−i),
 *   after Hugging Face's own SentencePiece converter order (left id, right id). A piece with two
 *   such periods asks for both orders and cannot be matched in every text; so can pieces with equal
 *   scores. Both are returned as warnings (tok512.bin has neither).
 *
 * Texts that still encode differently, by construction of the format: a literal `▁` in the text
 * (HF reads it as a space), and the spellings of the special tokens `<unk>`, `<s>`, `</s>` (HF
 * matches them as tokens, run.c spells them out).
 */

const SPACE = '\u2581';
const SPECIALS = [
  { id: 0, raw: '<unk>', content: '<unk>' },
  { id: 1, raw: '\n<s>\n', content: '<s>' },
  { id: 2, raw: '\n</s>\n', content: '</s>' },
] as const;
const BYTE_PIECES = 256;

export interface HfTokenizerFiles {
  /** tokenizer.json */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json */
  config: Record<string, unknown>;
  /** texts where the HF tokenizer may not reproduce run.c's ids, named */
  warnings: string[];
}

export function llama2cToHf(tok: Llama2cTokenizer, opts: { modelMaxLength?: number } = {}): HfTokenizerFiles {
  const pieces = hfPieces(tok);
  const { merges, warnings } = mergeList(tok, pieces);
  const vocab: Record<string, number> = {};
  pieces.forEach((p, id) => (vocab[p] = id));
  // run.c adds the dummy prefix only when the vocabulary has a " " piece
  const hasPrefix = pieces.includes(SPACE);
  const addedTokens = SPECIALS.map((s) => ({ id: s.id, content: s.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const bos = { SpecialToken: { id: '<s>', type_id: 0 } };
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: {
      type: 'Sequence',
      normalizers: [...(hasPrefix ? [{ type: 'Prepend', prepend: SPACE }] : []), { type: 'Replace', pattern: { String: ' ' }, content: SPACE }],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [bos, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [bos, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const config = {
    tokenizer_class: 'LlamaTokenizer',
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    pad_token: null,
    // run.c starts every text with BOS; transformers.js adds it when this is true
    add_bos_token: true,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    legacy: false,
    ...(opts.modelMaxLength ? { model_max_length: opts.modelMaxLength } : {}),
    added_tokens_decoder: Object.fromEntries(addedTokens.map(({ id, ...t }) => [String(id), t])),
  };
  return { tokenizer, config, warnings };
}

/** The HF spelling of every piece, by id; what the format cannot carry is a user error naming the piece. */
function hfPieces(tok: Llama2cTokenizer): string[] {
  const fail = (id: number, why: string) => new UserError(`${tok.path}: piece ${id} ${JSON.stringify(tok.pieceBytes(id).toString('latin1'))} ${why}; a tokenizer.json cannot reproduce this tokenizer`);
  const pieces: string[] = [];
  const seen = new Map<string, number>();
  for (let id = 0; id < tok.vocabSize; id++) {
    const raw = tok.pieceBytes(id);
    let piece: string;
    if (id < SPECIALS.length) {
      if (raw.toString('latin1') !== SPECIALS[id]!.raw) throw fail(id, `is not llama2.c's ${JSON.stringify(SPECIALS[id]!.raw)}`);
      piece = SPECIALS[id]!.content;
    } else if (id < SPECIALS.length + BYTE_PIECES) {
      piece = `<0x${(id - SPECIALS.length).toString(16).toUpperCase().padStart(2, '0')}>`;
      if (raw.toString('latin1') !== piece) throw fail(id, `should be the byte-fallback piece ${piece}`);
    } else {
      const text = raw.toString('utf8');
      if (!Buffer.from(text, 'utf8').equals(raw)) throw fail(id, 'is not valid UTF-8');
      if (text.includes(SPACE)) throw fail(id, `contains ${SPACE} (U+2581), which tokenizer.json uses for spaces`);
      piece = text.replaceAll(' ', SPACE);
    }
    if (seen.has(piece)) throw fail(id, `repeats piece ${seen.get(piece)}`);
    seen.set(piece, id);
    pieces.push(piece);
  }
  return pieces;
}

/** Every split of every mergeable piece, best score first; see the file comment for the order within a piece. */
function mergeList(tok: Llama2cTokenizer, pieces: string[]): { merges: [string, string][]; warnings: string[] } {
  const rank = mergeRanks(tok.scores);
  const ids = new Map(pieces.map((p, i) => [p, i]));
  const byPiece: { id: number; splits: [string, string][] }[] = [];
  const periodic: string[] = [];
  const unmergeable: string[] = [];
  for (let id = 0; id < pieces.length; id++) {
    if (rank[id]! < 0) continue;
    const chars = Array.from(id < SPECIALS.length ? SPECIALS[id]!.raw.replaceAll(' ', SPACE) : pieces[id]!);
    const cuts: number[] = [];
    for (let i = 1; i < chars.length; i++) if (ids.has(chars.slice(0, i).join('')) && ids.has(chars.slice(i).join(''))) cuts.push(i);
    if (cuts.length === 0) continue;
    if (id < SPECIALS.length) {
      unmergeable.push(SPECIALS[id]!.content);
      continue;
    }
    const split = (i: number): [string, string] => [chars.slice(0, i).join(''), chars.slice(i).join('')];
    const { order, cyclic } = orderSplits(chars, cuts, (i) => [ids.get(split(i)[0])!, ids.get(split(i)[1])!]);
    if (cyclic) periodic.push(pieces[id]!);
    byPiece.push({ id, splits: order.map(split) });
  }
  byPiece.sort((a, b) => rank[a.id]! - rank[b.id]! || a.id - b.id);
  const warnings: string[] = [];
  const tied = byPiece.filter((p, i) => rank[p.id] === rank[byPiece[i - 1]?.id ?? -1] || rank[p.id] === rank[byPiece[i + 1]?.id ?? -1]);
  if (tied.length) warnings.push(`${tied.length} mergeable pieces share a score with another (${sample(tied.map((p) => pieces[p.id]!))}); where their pairs compete, run.c merges the leftmost and the tokenizer.json the lower-ranked`);
  if (periodic.length) warnings.push(`${periodic.length} pieces repeat with two periods (${sample(periodic)}); overlapping pairs spelling them may merge in another order than run.c's`);
  if (unmergeable.length) warnings.push(`special pieces ${unmergeable.join(', ')} can be spelled by merging other pieces, which run.c does and a tokenizer.json does not`);
  return { merges: byPiece.flatMap((p) => p.splits), warnings };
}

/**
 * The cuts of one piece in merge order: (left id, right id) first, then every cut i of a piece with
 * period i (chars[i:] = chars[:n−i]) moved before cut n−i, the stable topological order of those
 * constraints. `cyclic` when a piece needs both i before n−i and n−i before i.
 */
function orderSplits(chars: string[], cuts: number[], idsOf: (cut: number) => [number, number]): { order: number[]; cyclic: boolean } {
  const n = chars.length;
  const base = [...cuts].sort((a, b) => idsOf(a)[0] - idsOf(b)[0] || idsOf(a)[1] - idsOf(b)[1]);
  const hasPeriod = (i: number) => chars.slice(i).join('') === chars.slice(0, n - i).join('');
  const before = new Map<number, number[]>();
  const indegree = new Map(cuts.map((c) => [c, 0]));
  for (const i of cuts) {
    const j = n - i;
    if (i === j || !indegree.has(j) || !hasPeriod(i)) continue;
    before.set(i, [...(before.get(i) ?? []), j]);
    indegree.set(j, indegree.get(j)! + 1);
  }
  const order: number[] = [];
  const left = [...base];
  while (left.length) {
    const k = left.findIndex((c) => indegree.get(c) === 0);
    // a cycle: keep the base order for what is left
    if (k < 0) return { order: [...order, ...left], cyclic: true };
    const c = left.splice(k, 1)[0]!;
    order.push(c);
    for (const d of before.get(c) ?? []) indegree.set(d, indegree.get(d)! - 1);
  }
  return { order, cyclic: false };
}

function sample(names: string[]): string {
  const shown = names.slice(0, 3).map((n) => JSON.stringify(n));
  return names.length > 3 ? `${shown.join(', ')}, …` : shown.join(', ');
}
