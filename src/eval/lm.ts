import type { TokenDataset } from '../data/types.js';
import { UserError } from '../errors.js';
import { lmFeeds, type ModelIo } from '../model/io.js';
import { float32Data, ortFeeds } from '../runtime/feeds.js';
import type { ort } from '../runtime/ort.js';
import { FidelityAccumulator, type Fidelity } from './fidelity.js';
import { logSumExp } from './log-sum-exp.js';

export interface LMQuality {
  task: 'causal-lm';
  /** mean negative log-likelihood, nats per predicted token */
  nll: number;
  perplexity: number;
  /** 95 % interval of the perplexity from the per-token NLL's standard error */
  ppl_ci95: [number, number];
  tokens: number;
  sequences: number;
}

export interface LMEvalResult {
  quality: LMQuality;
  fidelity?: Fidelity;
}

/**
 * Mean NLL and perplexity: each sequence runs on its own (it already carries its BOS), and every
 * position but the last predicts the next token. Sums are float64. With `reference`, the same
 * logits feed KL(reference ‖ model), top-1 agreement and cosine.
 */
export async function evaluateCausalLM(
  model: LMSession,
  data: TokenDataset,
  opts: { vocab?: number; reference?: LMSession; dataPath?: string },
): Promise<LMEvalResult> {
  if (opts.vocab) checkVocab(opts.vocab, data, opts.dataPath);
  let sum = 0;
  let sumSq = 0;
  let tokens = 0;
  const fidelity = opts.reference ? new FidelityAccumulator() : undefined;
  for (const [i, seq] of data.sequences.entries()) {
    if (seq.length < 2) continue;
    const logits = await runLogits(model, seq);
    const vocab = logits.length / seq.length;
    checkVocab(vocab, data, opts.dataPath);
    const ref = opts.reference ? await runLogits(opts.reference, seq) : undefined;
    for (let t = data.scoreFrom?.[i] ?? 0; t + 1 < seq.length; t++) {
      const row = logits.subarray(t * vocab, (t + 1) * vocab);
      const nll = logSumExp(row) - row[seq[t + 1]];
      sum += nll;
      sumSq += nll * nll;
      tokens++;
      if (fidelity && ref) fidelity.add(ref.subarray(t * vocab, (t + 1) * vocab), row);
    }
  }
  if (tokens === 0) throw new UserError(`${opts.dataPath ?? 'dataset'}: no sequence has two or more tokens to evaluate`);
  const mean = sum / tokens;
  const variance = Math.max(sumSq / tokens - mean * mean, 0);
  const se = Math.sqrt(variance / tokens);
  return {
    quality: {
      task: 'causal-lm',
      nll: mean,
      perplexity: Math.exp(mean),
      ppl_ci95: [Math.exp(mean - 1.96 * se), Math.exp(mean + 1.96 * se)],
      tokens,
      sequences: data.sequences.filter((s) => s.length >= 2).length,
    },
    fidelity: fidelity?.result(),
  };
}

/** A causal LM's session with the description of what it takes. */
export interface LMSession {
  session: ort.InferenceSession;
  io: ModelIo;
}

/** Logits [1, L, vocab] of one sequence from scratch (an empty KV cache when the model has one). */
async function runLogits({ session, io }: LMSession, seq: Int32Array): Promise<Float32Array> {
  const out = await session.run(ortFeeds(lmFeeds(io, seq, 1, seq.length)), [io.outputName]);
  return float32Data(out[io.outputName]!);
}

function checkVocab(vocab: number, data: TokenDataset, dataPath: string | undefined): void {
  if (data.maxTokenId !== undefined && data.maxTokenId >= vocab) {
    throw new UserError(`${data.files[0]?.path ?? dataPath ?? 'dataset'}: token id ${data.maxTokenId} is outside the model's ${vocab}-token vocabulary`);
  }
  // a padded embedding (50,304 logits for GPT-2's 50,257 tokens) is fine; a larger tokenizer is not
  if (data.vocabSize !== undefined && data.vocabSize > vocab) {
    const tok = data.files.find((f) => /tok|vocab|json|model$/.test(f.path))?.path ?? dataPath ?? 'tokenizer';
    throw new UserError(`${tok}: tokenizer has ${data.vocabSize} tokens but the model's logits have only ${vocab} (field tokenizer)`);
  }
}
