import { decoderBlocks } from '../model/blocks.js';
import { loadModel } from '../model/load.js';
import type { Model } from '../model/model.js';
import { captureSession, ort } from '../runtime/ort.js';

/**
 * The teacher runs in ONNX Runtime (no gradients needed, and ORT is several times faster than
 * tfjs here): logits for every training batch, plus the residual stream after chosen blocks when
 * the loss matches hidden states.
 */
export class Teacher {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly inputName: string,
    readonly logitsName: string,
    /** block index → the teacher's tensor name for that block's output */
    readonly hidden: Map<number, string>,
  ) {}

  static async open(path: string, inputName: string, logitsName: string, hiddenBlocks: readonly number[], threads = 0): Promise<Teacher> {
    const model: Model = loadModel(path);
    try {
      const blocks = new Map(decoderBlocks(model).map((b) => [b.index, b.output]));
      const hidden = new Map(hiddenBlocks.filter((i) => blocks.has(i)).map((i) => [i, blocks.get(i)!]));
      const session = await captureSession(model, [logitsName, ...hidden.values()], { threads });
      return new Teacher(session, inputName, logitsName, hidden);
    } finally {
      model.close();
    }
  }

  /** The ORT session (for sampling training text). */
  get ortSession(): ort.InferenceSession {
    return this.session;
  }

  async run(ids: Int32Array, batch: number, seqLen: number): Promise<{ logits: Float32Array; hidden: Map<number, Float32Array> }> {
    const feed = new ort.Tensor('int64', BigInt64Array.from(ids, (v) => BigInt(v)), [batch, seqLen]);
    const out = await this.session.run({ [this.inputName]: feed });
    const hidden = new Map<number, Float32Array>();
    for (const [i, name] of this.hidden) hidden.set(i, out[name]!.data as Float32Array);
    return { logits: out[this.logitsName]!.data as Float32Array, hidden };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
