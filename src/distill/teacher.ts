import { attentionOutputs, decoderBlocks } from '../model/blocks.js';
import { loadModel } from '../model/load.js';
import type { Model } from '../model/model.js';
import { encodeInlineWithOutputs } from '../model/onnx-io.js';
import { UserError } from '../errors.js';
import { lmFeeds, modelIo, presentNames, type ModelIo } from '../model/io.js';
import { ortFeeds } from '../runtime/feeds.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';
import { sessionFromBytes, type ort } from '../runtime/ort.js';

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

/**
 * What opening a teacher resolves once, all structured-cloneable: the bytes and options of its ORT
 * session and what it takes and gives. A Teacher on this thread and a TeacherThread
 * (teacher-thread.ts) built from one spec run the same session, so their targets are the same bits.
 */
export interface TeacherSpec {
  /** the teacher's file (errors name it) */
  path: string;
  /** the teacher inline, with its logits, present.*, and the hidden and attention tensors below as its only outputs */
  bytes: Uint8Array;
  /** ONNX Runtime's intra-op threads; 0 lets it choose */
  threads: number;
  /** what the teacher takes and gives (its own description: it may be a plain or a KV-cache export) */
  io: ModelIo;
  /** block index → the teacher's tensor name for that block's output */
  hidden: Map<number, string>;
  /** block index → the teacher's tensor name for that block's attention output */
  attention: Map<number, string>;
}

/** A source of teacher targets: a Teacher on this thread, or one in a worker thread. */
export interface TeacherTargetSource {
  readonly io: ModelIo;
  readonly hidden: ReadonlyMap<number, string>;
  readonly attention: ReadonlyMap<number, string>;
  run(ids: Int32Array, batch: number, seqLen: number): Promise<TeacherTargets>;
  close(): Promise<void>;
}

export async function teacherSpec(path: string, outputs: TeacherOutputs = {}, threads = 0): Promise<TeacherSpec> {
  const model: Model = loadModel(path);
  try {
    const io = await resolveKvShapes(model, modelIo(model), threads);
    if (io.task !== 'causal-lm') throw new UserError(`${path}: the distillation teacher must be a language model (token ids in, logits out); it takes '${io.inputName}' as floats`);
    const blocks = new Map(decoderBlocks(model).map((b) => [b.index, b.output]));
    const hidden = new Map((outputs.hidden ?? []).filter((i) => blocks.has(i)).map((i) => [i, blocks.get(i)!]));
    const attn = attentionOutputs(model);
    const attention = new Map((outputs.attention ?? []).filter((i) => attn.has(i)).map((i) => [i, attn.get(i)!]));
    // present.* stay outputs so that sampling training text can decode with the cache
    const bytes = encodeInlineWithOutputs(model, [io.outputName, ...presentNames(io), ...hidden.values(), ...attention.values()]);
    return { path, bytes, threads, io, hidden, attention };
  } finally {
    model.close();
  }
}

/** The teacher's ORT session on this thread (onnxruntime-node 1.30 runs it synchronously on the calling thread). */
export class Teacher implements TeacherTargetSource {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly io: ModelIo,
    readonly hidden: Map<number, string>,
    readonly attention: Map<number, string>,
  ) {}

  static async open(path: string, outputs: TeacherOutputs = {}, threads = 0): Promise<Teacher> {
    return Teacher.fromSpec(await teacherSpec(path, outputs, threads));
  }

  static async fromSpec(spec: TeacherSpec): Promise<Teacher> {
    const session = await sessionFromBytes(spec.bytes, { threads: spec.threads }, `the distillation teacher's session for ${spec.path}`);
    return new Teacher(session, spec.io, spec.hidden, spec.attention);
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
