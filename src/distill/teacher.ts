import { decoderBlocks } from '../model/blocks.js';
import { loadModel } from '../model/load.js';
import type { Model } from '../model/model.js';
import { UserError } from '../errors.js';
import { lmFeeds, modelIo, presentNames, type ModelIo } from '../model/io.js';
import { ortFeeds } from '../runtime/feeds.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';
import { captureSession, type ort } from '../runtime/ort.js';

/**
 * The teacher runs in ONNX Runtime (no gradients needed, and ORT is several times faster than
 * tfjs here): logits for every training batch, plus the residual stream after chosen blocks when
 * the loss matches hidden states.
 */
export class Teacher {
  private constructor(
    private readonly session: ort.InferenceSession,
    /** what the teacher takes and gives (its own description: it may be a plain or a KV-cache export) */
    readonly io: ModelIo,
    /** block index → the teacher's tensor name for that block's output */
    readonly hidden: Map<number, string>,
  ) {}

  static async open(path: string, hiddenBlocks: readonly number[], threads = 0): Promise<Teacher> {
    const model: Model = loadModel(path);
    try {
      const io = await resolveKvShapes(model, modelIo(model), threads);
      if (io.task !== 'causal-lm') throw new UserError(`${path}: the distillation teacher must be a language model (token ids in, logits out); it takes '${io.inputName}' as floats`);
      const blocks = new Map(decoderBlocks(model).map((b) => [b.index, b.output]));
      const hidden = new Map(hiddenBlocks.filter((i) => blocks.has(i)).map((i) => [i, blocks.get(i)!]));
      // present.* stay outputs so that sampling training text can decode with the cache
      const session = await captureSession(model, [io.outputName, ...presentNames(io), ...hidden.values()], { threads });
      return new Teacher(session, io, hidden);
    } finally {
      model.close();
    }
  }

  /** The ORT session (for sampling training text). */
  get ortSession(): ort.InferenceSession {
    return this.session;
  }

  async run(ids: Int32Array, batch: number, seqLen: number): Promise<{ logits: Float32Array; hidden: Map<number, Float32Array> }> {
    const out = await this.session.run(ortFeeds(lmFeeds(this.io, ids, batch, seqLen)), [this.io.outputName, ...this.hidden.values()]);
    const hidden = new Map<number, Float32Array>();
    for (const [i, name] of this.hidden) hidden.set(i, out[name]!.data as Float32Array);
    return { logits: out[this.io.outputName]!.data as Float32Array, hidden };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
