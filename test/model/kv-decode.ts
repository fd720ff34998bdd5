import { emptyPast, type HostFeeds, lmFeeds, modelIo, type ModelIo, pastFromPresent, presentNames, tokenFeeds } from '../../src/model/io.js';
import type { Model } from '../../src/model/model.js';
import { ortFeeds } from '../../src/runtime/feeds.js';
import { resolveKvShapes } from '../../src/runtime/kv-shapes.js';
import { ort, sessionFromFile, sessionFromModel, type SessionOptions } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { allClose } from '../helpers.js';

/**
 * One ONNX Runtime session over a decoder, fed through model/io: `full` runs whole sequences from an
 * empty cache, `step` appends tokens to the cache it keeps (present → past) and returns their logits.
 * Rows of `ids` are the batch; all have the same length.
 */
export class Decoder {
  private past: Record<string, ort.Tensor> = {};
  private pastLength = 0;

  private constructor(
    readonly session: ort.InferenceSession,
    readonly io: ModelIo,
  ) {}

  /** `opts` beyond one thread (qdqMatMulNBitsAccuracyLevel 0: fused int8 layers compute in float32) */
  static async open(model: Model, file?: string, opts: SessionOptions = {}): Promise<Decoder> {
    const io = await resolveKvShapes(model, modelIo(model));
    const options = { threads: 1, ...opts };
    return new Decoder(file ? await sessionFromFile(file, options) : await sessionFromModel(model, options), io);
  }

  /** logits [batch, seq, vocab] of `ids` at past length 0 */
  async full(ids: number[][], adjust?: (feeds: HostFeeds) => void): Promise<Float32Array> {
    const feeds = lmFeeds(this.io, ids.flat(), ids.length, ids[0]!.length);
    adjust?.(feeds);
    return (await this.session.run(ortFeeds(feeds), [this.io.outputName])).logits!.data as Float32Array;
  }

  /** logits [batch, seq, vocab] of `ids` after the tokens already in the cache; the cache grows by them */
  async step(ids: number[][]): Promise<Float32Array> {
    const batch = ids.length;
    const seq = ids[0]!.length;
    const feeds = { ...ortFeeds({ ...tokenFeeds(this.io, ids.flat(), batch, seq, this.pastLength), ...(this.pastLength === 0 ? emptyPast(this.io, batch) : {}) }), ...this.past };
    const out = await this.session.run(feeds, [this.io.outputName, ...presentNames(this.io)]);
    this.past = pastFromPresent(this.io, out);
    this.pastLength += seq;
    return out[this.io.outputName]!.data as Float32Array;
  }

  reset(): void {
    this.past = {};
    this.pastLength = 0;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Row t of batch row b of logits [batch, seq, vocab]. */
export function position(logits: Float32Array, vocab: number, seq: number, b: number, t: number): Float32Array {
  const at = (b * seq + t) * vocab;
  return logits.subarray(at, at + vocab);
}

export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** `batch` rows of `seq` seeded token ids below `vocab`. */
export function tokens(vocab: number, batch: number, seq: number, seed: number): number[][] {
  const r = seededRandom(seed);
  return Array.from({ length: batch }, () => Array.from({ length: seq }, () => Math.floor(r() * vocab)));
}

/** Decoders over `models` for the duration of `fn`, released after it. */
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
