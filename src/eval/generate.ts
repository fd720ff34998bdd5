import { UserError } from '../errors.js';
import { emptyPast, lmFeeds, modelIo, type ModelIo, pastFromPresent, presentNames, tokenFeeds } from '../model/io.js';
import { loadModel } from '../model/load.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';
import { nodeSession } from '../runtime/node-session.js';
import { openSession } from '../runtime/open.js';
import { sessionFromModel } from '../runtime/ort.js';
import { asFeed, floatOutput, RuntimeFailure, type HostOutput, type RuntimeName, type RuntimeSession } from '../runtime/session.js';
import type { HostFeeds } from '../model/io.js';
import { tokenPicker, type Sampling } from './sampling.js';

/**
 * Text generation for eyeballing a model: a prompt's continuation, token by token. A model with a
 * KV cache is prefilled with the prompt, then fed one token per step with the previous step's
 * present.* as its past; a model without one re-runs the whole sequence for every token. The text
 * ends at EOS, or at BOS, which begins the next document (stories260K separates its stories so, and
 * llama2.c's run.c stops there), or after the maximum number of new tokens.
 */

/** A causal LM session and the description of what it takes. */
export interface CausalLm {
  path: string;
  io: ModelIo;
  session: RuntimeSession;
}

/**
 * Opens `path` for generation: an .onnx file as it is, a .safetensors checkpoint built with the KV
 * cache (onnxruntime-node only). A model whose data input is not token ids is a user error.
 */
export async function openCausalLm(path: string, threads?: number, runtime: RuntimeName = 'node'): Promise<CausalLm> {
  const model = loadModel(path);
  try {
    const declared = modelIo(model);
    if (declared.task !== 'causal-lm') {
      throw new UserError(`${path}: input '${declared.inputName}' is not token ids; pare generate needs a causal language model (token ids in, logits out)`);
    }
    const io = await resolveKvShapes(model, declared);
    const opts = { threads: threads ?? 0 };
    if (model.format !== 'onnx' && runtime === 'web') throw new UserError(`${path}: onnxruntime-web runs .onnx files; compress or export the checkpoint to .onnx first`);
    const session = model.format === 'onnx' ? await openSession(runtime, model.path, opts) : nodeSession(await sessionFromModel(model, opts), path);
    return { path, io, session };
  } finally {
    model.close();
  }
}

export interface Decoded {
  /** the model file */
  path: string;
  /** true: decoded with the KV cache; false: the whole sequence re-run for every token */
  cache: boolean;
  /** the new tokens, the EOS or BOS that ended the text included */
  tokens: number[];
  stop: 'eos' | 'bos' | 'max_new_tokens';
  timing: Timing;
}

/** Prefill: the run over the prompt (it yields the first new token); decode: every run after it. */
export interface Timing {
  prefill_tokens: number;
  prefill_ms: number;
  prefill_tokens_per_s: number;
  decode_tokens: number;
  decode_ms: number;
  /** null when no token was decoded after the prefill */
  decode_tokens_per_s: number | null;
}

export interface GenerateOptions {
  maxNewTokens: number;
  sampling: Sampling;
  /** stop after either of these tokens */
  eosId?: number;
  bosId?: number;
}

export async function generate(lm: CausalLm, prompt: readonly number[], opts: GenerateOptions): Promise<Decoded> {
  if (prompt.length === 0) throw new Error('generate: an empty prompt has no position to predict from');
  const pick = tokenPicker(opts.sampling);
  const cached = lm.io.kv !== undefined;
  const step = cached ? cachedSteps(lm) : fullSteps(lm);
  const tokens: number[] = [];
  const t0 = performance.now();
  let logits = await step([...prompt]);
  const t1 = performance.now();
  for (;;) {
    const next = pick(logits);
    tokens.push(next);
    if (next === opts.eosId || next === opts.bosId || tokens.length >= opts.maxNewTokens) break;
    logits = await step([next]);
  }
  const t2 = performance.now();
  const decoded = tokens.length - 1;
  return {
    path: lm.path,
    cache: cached,
    tokens,
    stop: tokens.at(-1) === opts.eosId ? 'eos' : tokens.at(-1) === opts.bosId ? 'bos' : 'max_new_tokens',
    timing: {
      prefill_tokens: prompt.length,
      prefill_ms: t1 - t0,
      prefill_tokens_per_s: prompt.length / ((t1 - t0) / 1000),
      decode_tokens: decoded,
      decode_ms: t2 - t1,
      decode_tokens_per_s: decoded > 0 ? decoded / ((t2 - t1) / 1000) : null,
    },
  };
}

/** Appends `ids` to the sequence so far and returns the last position's logits. */
type Step = (ids: number[]) => Promise<Float32Array>;

function cachedSteps(lm: CausalLm): Step {
  let past: HostFeeds = emptyPast(lm.io, 1, lm.path);
  let length = 0;
  return async (ids) => {
    const out = await run(lm, { ...tokenFeeds(lm.io, ids, 1, ids.length, length), ...past }, [lm.io.outputName, ...presentNames(lm.io)], length + ids.length);
    past = pastFromPresent(lm.io, out, asFeed);
    length += ids.length;
    return lastRow(lm, out[lm.io.outputName]!);
  };
}

function fullSteps(lm: CausalLm): Step {
  const sequence: number[] = [];
  return async (ids) => {
    sequence.push(...ids);
    const out = await run(lm, lmFeeds(lm.io, sequence, 1, sequence.length, lm.path), [lm.io.outputName], sequence.length);
    return lastRow(lm, out[lm.io.outputName]!);
  };
}

async function run(lm: CausalLm, feeds: HostFeeds, outputs: string[], length: number): Promise<Record<string, HostOutput>> {
  try {
    return await lm.session.run(feeds, outputs);
  } catch (e) {
    if (!(e instanceof RuntimeFailure)) throw e;
    // a model's positions run out (GPT-2's wpe table) or its graph does not take what io describes
    throw new UserError(`${lm.path}: ONNX Runtime failed at sequence length ${length} (${e.detail}); try a shorter --prompt or fewer --max-new-tokens`);
  }
}

/** The last position's logits as float32 (a q4f16 model's float16 logits are widened). */
function lastRow(lm: CausalLm, logits: HostOutput): Float32Array {
  const dims = logits.dims;
  if (dims.length !== 3 || dims[0] !== 1 || (logits.type !== 'float32' && logits.type !== 'float16')) {
    throw new UserError(`${lm.path}: output '${lm.io.outputName}' is ${logits.type}[${dims.join(', ')}]; pare generate needs float32 or float16 logits [batch, sequence, vocab]`);
  }
  const vocab = dims[2]!;
  const last = { ...logits, data: (logits.data as Float32Array | Uint16Array).subarray(logits.data.length - vocab) };
  return floatOutput(last, lm.io.outputName, lm.path);
}

/** Index of the first new token where two generations differ; null when one is a prefix of the other. */
export function divergence(a: readonly number[], b: readonly number[]): number | null {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return null;
}
