import { attentionOutputs, decoderBlocks } from '../model/blocks.js';
import { loadModel } from '../model/load.js';
import type { Model } from '../model/model.js';
import { UserError } from '../errors.js';
import { lmFeeds, modelIo, presentNames, type ModelIo } from '../model/io.js';
import { ortFeeds } from '../runtime/feeds.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';
import { captureSession, type ort } from '../runtime/ort.js';

/** The blocks whose hidden state (residual stream after the block) and attention output (o_proj's) the teacher also returns. */
export interface TeacherOutputs {
  hidden?: readonly number[];
  attention?: readonly number[];
}

/**
 * The teacher runs in ONNX Runtime (no gradients needed, and ORT is several times faster than
 * tfjs here): logits for every training batch, plus the residual stream after chosen blocks when
 * the loss matches hidden states, and chosen blocks' attention outputs when it matches those.
 */
/** The teacher's outputs on one batch: logits, and by block index the hidden states and attention outputs asked for. */
export interface TeacherTargets {
  logits: Float32Array;
  hidden: Map<number, Float32Array>;
  attention: Map<number, Float32Array>;
}

export class Teacher {
  private constructor(
    private readonly session: ort.InferenceSession,
    /** what the teacher takes and gives (its own description: it may be a plain or a KV-cache export) */
    readonly io: ModelIo,
    /** block index → the teacher's tensor name for that block's output */
    readonly hidden: Map<number, string>,
    /** block index → the teacher's tensor name for that block's attention output */
    readonly attention: Map<number, string>,
  ) {}

  static async open(path: string, outputs: TeacherOutputs = {}, threads = 0): Promise<Teacher> {
    const model: Model = loadModel(path);
    try {
      const io = await resolveKvShapes(model, modelIo(model), threads);
      if (io.task !== 'causal-lm') throw new UserError(`${path}: the distillation teacher must be a language model (token ids in, logits out); it takes '${io.inputName}' as floats`);
      const blocks = new Map(decoderBlocks(model).map((b) => [b.index, b.output]));
      const hidden = new Map((outputs.hidden ?? []).filter((i) => blocks.has(i)).map((i) => [i, blocks.get(i)!]));
      const attn = attentionOutputs(model);
      const attention = new Map((outputs.attention ?? []).filter((i) => attn.has(i)).map((i) => [i, attn.get(i)!]));
      // present.* stay outputs so that sampling training text can decode with the cache
      const session = await captureSession(model, [io.outputName, ...presentNames(io), ...hidden.values(), ...attention.values()], { threads });
      return new Teacher(session, io, hidden, attention);
    } finally {
      model.close();
    }
  }

  /** The ORT session (for sampling training text). */
  get ortSession(): ort.InferenceSession {
    return this.session;
  }

  async run(ids: Int32Array, batch: number, seqLen: number): Promise<TeacherTargets> {
    const out = await this.session.run(ortFeeds(lmFeeds(this.io, ids, batch, seqLen)), [this.io.outputName, ...this.hidden.values(), ...this.attention.values()]);
    const pick = (names: Map<number, string>) => new Map([...names].map(([i, name]) => [i, out[name]!.data as Float32Array]));
    return { logits: out[this.io.outputName]!.data as Float32Array, hidden: pick(this.hidden), attention: pick(this.attention) };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
