import { join } from 'node:path';
import { generateCheckpoint, tensorValues, type CheckpointSpec } from '../../../fixtures/generate-models.js';
import type { Model } from '../../../src/model/model.js';
import type { SessionOptions } from '../../../src/runtime/ort.js';
import { seededRandom } from '../../../src/util/random.js';
import { allClose, tempDir } from '../../helpers.js';
import { argmax, Decoder, position } from '../kv-decode.js';

/**
 * Test logic shared by the Phi-3 and Gemma 3 family tests: seeded token batches, a generated
 * checkpoint in a temporary folder, its weights as float64 for a reference forward, decoders, and
 * greedy decoding with the cache checked against re-running the whole sequence.
 */

export function tokens(vocab: number, batch: number, seq: number, seed: number): number[][] {
  const r = seededRandom(seed);
  return Array.from({ length: batch }, () => Array.from({ length: seq }, () => Math.floor(r() * vocab)));
}

export const SEED = 11;

/** Generates `spec` (seed 11) in a temporary folder for the duration of `fn`; `fn` gets model.safetensors. */
export function withCheckpoint(spec: CheckpointSpec, fn: (path: string, dir: string) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const tmp = tempDir('pare-family-');
    try {
      generateCheckpoint(spec, join(tmp.dir, 'in'), { seed: SEED, onnx: false });
      await fn(join(tmp.dir, 'in', 'model.safetensors'), tmp.dir);
    } finally {
      tmp.cleanup();
    }
  };
}

/** The checkpoint's tensors by name as float64, as the generator wrote them. */
export function weightsOf(spec: CheckpointSpec): (name: string) => Float64Array {
  const values = new Map(spec.tensors.map((t) => [t.name, Float64Array.from(tensorValues(t, SEED))]));
  return (name) => {
    const v = values.get(name);
    if (!v) throw new Error(`reference asked for '${name}', which the checkpoint lacks`);
    return v;
  };
}

export const flat = (logits: Float64Array[][]): Float64Array => Float64Array.from(logits.flatMap((r) => r.flatMap((v) => [...v])));

export async function withDecoders<T>(models: Model[], fn: (...d: Decoder[]) => Promise<T>, options: SessionOptions = {}): Promise<T> {
  const ds = await Promise.all(models.map((m) => Decoder.open(m, undefined, options)));
  try {
    return await fn(...ds);
  } finally {
    for (const d of ds) await d.release();
  }
}

/**
 * Greedy decoding of `steps` tokens after `prompt` with the cache (prefill, then one token per step)
 * checked at every step against `full`'s run of the whole sequence from an empty cache; the worst
 * relative Frobenius error of the newest position's logits and both token streams.
 */
export async function cachedAgainstFull(cached: Decoder, full: Decoder, prompt: number[][], steps: number, vocab: number) {
  const seqs = prompt.map((r) => [...r]);
  let next = await cached.step(prompt);
  let worst = 0;
  let worstAt = '';
  const cachedTokens: number[][] = prompt.map(() => []);
  const fullTokens: number[][] = prompt.map(() => []);
  for (let s = 0; s < steps; s++) {
    const len = seqs[0]!.length;
    const ref = await full.full(seqs);
    const stepLen = s === 0 ? len : 1;
    for (let b = 0; b < seqs.length; b++) {
      const got = position(next, vocab, stepLen, b, stepLen - 1);
      const want = position(ref, vocab, len, b, len - 1);
      const c = allClose(got, want, 1e-4, 1e-5);
      if (c.relFro > worst) [worst, worstAt] = [c.relFro, `step ${s} row ${b}: ${c.worst}`];
      cachedTokens[b]!.push(argmax(got));
      fullTokens[b]!.push(argmax(want));
    }
    const chosen = cachedTokens.map((t) => t.at(-1)!);
    seqs.forEach((r, b) => r.push(chosen[b]!));
    next = await cached.step(chosen.map((t) => [t]));
  }
  return { worst, worstAt, cachedTokens, fullTokens };
}

/** Every node input is a graph input, an initializer or another node's output. */
export function danglingInputs(model: Model): string[] {
  const known = new Set([...(model.graph.input ?? []).map((v) => v.name), ...(model.graph.initializer ?? []).map((t) => t.name), ...(model.graph.node ?? []).flatMap((n) => n.output ?? [])]);
  return (model.graph.node ?? []).flatMap((n) => (n.input ?? []).filter((x) => x && !known.has(x)));
}
