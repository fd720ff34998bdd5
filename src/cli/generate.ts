import type { Command } from 'commander';
import { loadTokenizer, type Tokenizer } from '../data/tokenizer.js';
import { UserError } from '../errors.js';
import { folderTokenizer, folderVariant } from '../model/hf-folder.js';
import { divergence, generate, openCausalLm, type Decoded } from '../eval/generate.js';
import type { Sampling } from '../eval/sampling.js';
import type { Io } from './io.js';

interface GenerateFlags {
  prompt: string;
  tokenizer?: string;
  maxNewTokens?: string;
  temperature?: string;
  topK?: string;
  seed?: string;
  reference?: string;
  threads?: string;
  json?: boolean;
  dtype?: string;
}

export interface Generated extends Decoded {
  /** prompt and continuation, decoded together */
  text: string;
  /** with a reference that diverges: where in `text` the first differing token starts */
  diverges_at_char?: number;
}

export interface GenerateReport {
  prompt: { text: string; tokens: number[] };
  sampling: Sampling;
  max_new_tokens: number;
  model: Generated;
  reference?: Generated;
  /** with a reference: index of the first new token where the two differ, null when none does */
  diverges_at?: number | null;
}

const MARK = '‖';

function integer(flag: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UserError(`${flag} expects an integer ≥ ${min}, got ${v}`);
  return n;
}

function sampling(f: GenerateFlags): Sampling {
  if (f.temperature === undefined) {
    const stray = f.topK !== undefined ? '--top-k' : f.seed !== undefined ? '--seed' : undefined;
    if (stray) throw new UserError(`${stray} applies to sampling, which --temperature turns on; without it pare generate decodes greedily`);
    return { kind: 'greedy' };
  }
  const temperature = Number(f.temperature);
  if (!Number.isFinite(temperature) || temperature <= 0) throw new UserError(`--temperature expects a number > 0, got ${f.temperature}; leave it out for greedy decoding`);
  return { kind: 'sample', temperature, topK: integer('--top-k', f.topK, 1), seed: integer('--seed', f.seed, 0) ?? 0 };
}

/** Decodes the prompt's continuation on the model (and on the reference, with the same settings). */
export async function runGenerate(modelPath: string, f: GenerateFlags, tokenizer: Tokenizer): Promise<GenerateReport> {
  const s = sampling(f);
  const maxNewTokens = integer('--max-new-tokens', f.maxNewTokens, 1) ?? 64;
  const threads = integer('--threads', f.threads, 0);
  const prompt = tokenizer.encode(f.prompt, { bos: true });
  if (prompt.length === 0) throw new UserError(`--prompt: an empty prompt gives no tokens and ${f.tokenizer} has no BOS token to start from`);
  // SentencePiece's dummy prefix decodes as a leading space the prompt did not have (run.c drops it too)
  const detokenize = (ids: number[]) => {
    const text = tokenizer.decode(ids);
    return text.startsWith(' ') && !f.prompt.startsWith(' ') ? text.slice(1) : text;
  };
  const one = async (path: string): Promise<Generated> => {
    const lm = await openCausalLm(path, threads);
    try {
      const width = lm.io.outputWidth;
      if (width !== undefined && tokenizer.vocabSize > width) {
        throw new UserError(`${f.tokenizer}: the tokenizer has ${tokenizer.vocabSize} tokens but ${path}'s logits have only ${width}; pass the model's own tokenizer`);
      }
      const d = await generate(lm, prompt, { maxNewTokens, sampling: s, eosId: tokenizer.eosId, bosId: tokenizer.bosId });
      return { ...d, text: detokenize([...prompt, ...d.tokens]) };
    } finally {
      await lm.session.release();
    }
  };
  const report: GenerateReport = { prompt: { text: f.prompt, tokens: prompt }, sampling: s, max_new_tokens: maxNewTokens, model: await one(modelPath) };
  if (f.reference) {
    report.reference = await one(f.reference);
    const at = divergence(report.model.tokens, report.reference.tokens);
    report.diverges_at = at;
    if (at !== null) {
      for (const g of [report.model, report.reference]) g.diverges_at_char = detokenize([...prompt, ...g.tokens.slice(0, at)]).length;
    }
  }
  return report;
}

/** The text with MARK where the first differing token starts. */
function marked(g: Generated): string {
  return g.diverges_at_char === undefined ? g.text : `${g.text.slice(0, g.diverges_at_char)}${MARK}${g.text.slice(g.diverges_at_char)}`;
}

function describe(r: GenerateReport): string {
  const s = r.sampling;
  return s.kind === 'greedy' ? 'greedy' : `sampled at temperature ${s.temperature}${s.topK ? `, top-k ${s.topK}` : ''}, seed ${s.seed}`;
}

function speed(g: Generated): string {
  const t = g.timing;
  const decode = t.decode_tokens > 0 ? `decode ${t.decode_tokens} tokens in ${t.decode_ms.toFixed(1)} ms (${t.decode_tokens_per_s!.toFixed(0)} tokens/s)` : 'no decode steps';
  const stop = g.stop === 'max_new_tokens' ? `stopped at ${g.tokens.length} new tokens` : `stopped at ${g.stop === 'eos' ? 'EOS' : 'BOS (the next document)'} after ${g.tokens.length} new tokens`;
  return `prefill ${t.prefill_tokens} tokens in ${t.prefill_ms.toFixed(1)} ms (${t.prefill_tokens_per_s.toFixed(0)} tokens/s), ${decode}; ${stop}`;
}

export function formatGeneration(r: GenerateReport, tokenizer: Tokenizer): string {
  const block = (label: string, g: Generated) => [
    `${label}${g.path}  (${g.cache ? 'KV cache' : 'no KV cache: the whole sequence re-run per token'}, ${describe(r)})`,
    marked(g),
    speed(g),
  ];
  const lines = block(r.reference ? 'model      ' : '', r.model);
  if (r.reference) {
    lines.push('', ...block('reference  ', r.reference), '');
    const at = r.diverges_at;
    if (at === null || at === undefined) {
      lines.push(`identical: all ${r.model.tokens.length} new tokens agree`);
    } else {
      const piece = (g: Generated) => (at < g.tokens.length ? `${g.tokens[at]} ${JSON.stringify(tokenizer.decode([g.tokens[at]!]))}` : 'end');
      lines.push(`diverges at new token ${at + 1} of ${r.model.tokens.length}: model ${piece(r.model)}, reference ${piece(r.reference)} (${MARK} marks it in both texts)`);
    }
  }
  return lines.join('\n');
}

export function registerGenerateCommand(program: Command, io: Io, setCode: (c: number) => void): void {
  program
    .command('generate')
    .description("continue a prompt with a causal LM (KV cache when the model has one), beside a reference model's continuation")
    .argument('<model>', '.onnx, .safetensors with config.json beside it (built with a KV cache), or a transformers.js model folder (its fp32 model)')
    .requiredOption('--prompt <text>', 'the text to continue (BOS is prepended)')
    .option('--tokenizer <file>', "llama2.c tokenizer.bin or Hugging Face tokenizer.json (default: a model folder's tokenizer.json)")
    .option('--dtype <dtype>', "a model folder's file for this transformers.js dtype (fp32, fp16, q8, q4, q4f16) instead of its fp32 model")
    .option('--max-new-tokens <n>', 'stop after this many new tokens (default 64), or earlier at EOS or BOS')
    .option('--temperature <t>', 'sample at this temperature instead of decoding greedily')
    .option('--top-k <k>', 'sampling: draw from the k most likely tokens only')
    .option('--seed <s>', 'sampling: random seed (default 0)')
    .option('--reference <model>', 'also continue the prompt on this model (the original) and mark where the two diverge')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)')
    .option('--json', 'print exactly one JSON document')
    .action(async (modelPath: string, f: GenerateFlags) => {
      const tokenizerPath = f.tokenizer ?? folderTokenizer(modelPath);
      if (!tokenizerPath) throw new UserError(`${modelPath}: pass --tokenizer (a llama2.c tokenizer.bin or a tokenizer.json); only a model folder carries its own`);
      const tokenizer = loadTokenizer(tokenizerPath);
      const report = await runGenerate(f.dtype ? folderVariant(modelPath, f.dtype) : modelPath, { ...f, tokenizer: tokenizerPath }, tokenizer);
      io.out(f.json ? JSON.stringify(report, null, 2) : formatGeneration(report, tokenizer));
      setCode(0);
    });
}
