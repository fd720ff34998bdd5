import { emptyPast, lmFeeds, modelIo, presentNames, tokenFeeds, type HostFeeds, type ModelIo } from '../../src/model/io.js';
import type { Model } from '../../src/model/model.js';
import { ortFeeds } from '../../src/runtime/feeds.js';
import { resolveKvShapes } from '../../src/runtime/kv-shapes.js';
import { ort, sessionFromFile, sessionFromModel, type SessionOptions } from '../../src/runtime/ort.js';

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

  static async open(model: Model, file?: string, options: SessionOptions = {}): Promise<Decoder> {
    const io = await resolveKvShapes(model, modelIo(model));
    const opts = { threads: 1, ...options };
    return new Decoder(file ? await sessionFromFile(file, opts) : await sessionFromModel(model, opts), io);
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
    this.past = Object.fromEntries(this.io.kv!.layers.flatMap((l) => [[l.pastKey, out[l.presentKey]!], [l.pastValue, out[l.presentValue]!]]));
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
