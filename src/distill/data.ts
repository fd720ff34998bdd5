import type { Feeds } from '../calibrate/feeds.js';
import { UserError } from '../errors.js';
import { seededRandom } from '../util/random.js';
import { emptyPast, lmFeeds, type ModelIo, pastFromPresent, presentNames, tokenFeeds } from '../model/io.js';
import { float32Data, ortFeeds } from '../runtime/feeds.js';
import type { ort } from '../runtime/ort.js';

/**
 * Training windows for distillation: token rows of exactly `seqLen` ids, drawn from the calibration
 * set, a dataset, or text the teacher writes itself (data-free). Batches are a seeded shuffle per
 * epoch, so a run with the same seed sees the same batches at the same steps (what --resume needs).
 */
export class TokenWindows {
  constructor(
    readonly rows: Int32Array[],
    readonly seqLen: number,
    private readonly seed: number,
  ) {
    if (rows.length === 0) throw new Error('no training windows');
  }

  get tokens(): number {
    return this.rows.length * this.seqLen;
  }

  /** The `batch` rows of step `step` (0-based), as one row-major [batch, seqLen] array. */
  batch(step: number, batch: number): Int32Array {
    const out = new Int32Array(batch * this.seqLen);
    for (let b = 0; b < batch; b++) {
      const k = step * batch + b;
      const epoch = Math.floor(k / this.rows.length);
      out.set(this.rows[this.order(epoch)[k % this.rows.length]!]!, b * this.seqLen);
    }
    return out;
  }

  private orders = new Map<number, Int32Array>();

  private order(epoch: number): Int32Array {
    let o = this.orders.get(epoch);
    if (!o) {
      o = shuffled(this.rows.length, mix(this.seed, epoch));
      if (this.orders.size > 4) this.orders.clear();
      this.orders.set(epoch, o);
    }
    return o;
  }
}

function mix(a: number, b: number): number {
  return (Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35)) >>> 0;
}

/** Fisher–Yates with the pipeline's seeded generator. */
function shuffled(n: number, seed: number): Int32Array {
  const rand = seededRandom(seed);
  const o = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [o[i], o[j]] = [o[j]!, o[i]!];
  }
  return o;
}

/** Non-overlapping windows of exactly `seqLen` tokens cut from each sequence; shorter tails are dropped. */
export function windowsOf(sequences: readonly ArrayLike<number>[], seqLen: number): Int32Array[] {
  const rows: Int32Array[] = [];
  for (const seq of sequences) {
    for (let s = 0; s + seqLen <= seq.length; s += seqLen) rows.push(Int32Array.from({ length: seqLen }, (_, i) => seq[s + i]!));
  }
  return rows;
}

/** Token sequences of the calibration feeds (int64 [1, L] tensors of the model's token input). */
export function sequencesOfFeeds(feeds: readonly Feeds[], inputName: string, where: string): Int32Array[] {
  return feeds.map((f) => {
    const t = f[inputName];
    if (!t || (t.type !== 'int64' && t.type !== 'int32')) throw new UserError(`${where}: distill.kd needs token-id calibration data for input '${inputName}'`);
    return Int32Array.from(t.data as ArrayLike<bigint | number>, Number);
  });
}

export interface SamplingOptions {
  rows: number;
  seqLen: number;
  vocab: number;
  /** first token of every row (e.g. BOS); a uniformly random one when absent */
  startToken?: number;
  temperature: number;
  random: () => number;
  /** rows generated per ONNX Runtime call */
  batch?: number;
  /** false: re-run the prefix every step even when the teacher has a KV cache */
  useCache?: boolean;
}

/**
 * Data-free training text: rows sampled from the teacher token by token at `temperature`. A teacher
 * with a KV cache is fed one token per step with the previous step's present.* as its past (linear
 * in the row length); one without re-runs the prefix for every token (quadratic, and what
 * `useCache: false` forces, for comparison). Both draw the same random numbers in the same order,
 * so they give the same rows up to float rounding of the logits.
 */
export async function sampleFromTeacher(session: ort.InferenceSession, io: ModelIo, o: SamplingOptions): Promise<Int32Array[]> {
  const rows: Int32Array[] = [];
  const per = o.batch ?? 32;
  const step = io.kv && o.useCache !== false ? cachedSteps(session, io) : prefixSteps(session, io);
  for (let start = 0; start < o.rows; start += per) {
    const n = Math.min(per, o.rows - start);
    const ids = Array.from({ length: n }, () => new Int32Array(o.seqLen));
    for (const row of ids) row[0] = o.startToken ?? Math.floor(o.random() * o.vocab);
    const next = step(ids);
    for (let t = 1; t < o.seqLen; t++) {
      const { logits, offset, release } = await next(t);
      for (let r = 0; r < n; r++) ids[r]![t] = sampleToken(logits, offset(r), o.vocab, o.temperature, o.random);
      release();
    }
    rows.push(...ids);
  }
  return rows;
}

/** For rows whose first `t` tokens are set: the logits predicting token t, and where each row's are. */
type NextLogits = (t: number) => Promise<{ logits: Float32Array; offset: (row: number) => number; release: () => void }>;

function prefixSteps(session: ort.InferenceSession, io: ModelIo): (ids: Int32Array[]) => NextLogits {
  return (ids) => async (t) => {
    const n = ids.length;
    const feed = new Int32Array(n * t);
    for (let r = 0; r < n; r++) feed.set(ids[r]!.subarray(0, t), r * t);
    const out = await session.run(ortFeeds(lmFeeds(io, feed, n, t)), [io.outputName]);
    const logits = out[io.outputName]!;
    const vocab = Number(logits.dims[logits.dims.length - 1]);
    return { logits: float32Data(logits), offset: (r) => (r * t + t - 1) * vocab, release: () => logits.dispose?.() };
  };
}

function cachedSteps(session: ort.InferenceSession, io: ModelIo): (ids: Int32Array[]) => NextLogits {
  const presents = presentNames(io);
  return (ids) => {
    const n = ids.length;
    let past: Record<string, ort.Tensor> = ortFeeds(emptyPast(io, n));
    return async (t) => {
      // the cache holds tokens 0..t−2; feed token t−1
      const last = Int32Array.from(ids, (row) => row[t - 1]!);
      const out = await session.run({ ...ortFeeds(tokenFeeds(io, last, n, 1, t - 1)), ...past }, [io.outputName, ...presents]);
      for (const old of Object.values(past)) old.dispose?.();
      past = pastFromPresent(io, out);
      const logits = out[io.outputName]!;
      const vocab = Number(logits.dims[logits.dims.length - 1]);
      return { logits: float32Data(logits), offset: (r) => r * vocab, release: () => logits.dispose?.() };
    };
  };
}

function sampleToken(logits: Float32Array, offset: number, vocab: number, temperature: number, random: () => number): number {
  let max = -Infinity;
  for (let v = 0; v < vocab; v++) max = Math.max(max, logits[offset + v]!);
  if (temperature <= 0) {
    for (let v = 0; v < vocab; v++) if (logits[offset + v] === max) return v;
  }
  let sum = 0;
  const p = new Float64Array(vocab);
  for (let v = 0; v < vocab; v++) sum += p[v] = Math.exp((logits[offset + v]! - max) / temperature);
  let u = random() * sum;
  for (let v = 0; v < vocab; v++) if ((u -= p[v]!) <= 0) return v;
  return vocab - 1;
}
