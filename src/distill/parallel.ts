import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type * as tfjs from '@tensorflow/tfjs';
import type { ModelIo } from '../model/io.js';
import type { OnnxExecutor } from '../runtime/tfjs/executor.js';
import { distillWorkerUrl } from './worker-url.js';

/**
 * Data-parallel gradients of a distillation batch. The batch's rows are split into shares: this
 * thread differentiates the first share on its own executor while each worker thread
 * (grad-worker.ts, its own tfjs wasm executor over the same student) differentiates one more, with
 * the weights this thread holds at the start of the step. Every loss term is a mean over per-row
 * quantities of equal count (KL and cross-entropy per token, MSE per hidden element), so the
 * batch's loss and gradient are the shares' weighted by rows/B and summed, always in share order:
 * the same numbers as one thread up to float rounding. The optimizer step stays with the caller.
 */

export interface BatchTarget {
  logits: Float32Array;
  hidden: Map<number, Float32Array>;
  attention: Map<number, Float32Array>;
}

/** A student tensor matched to the teacher's tensor of the same block. */
export interface MatchedOutput {
  index: number;
  /** the student's tensor name */
  output: string;
}

/** the loss of `rows` windows (ids [rows, S]) against the teacher's outputs for them */
export type BatchLoss = (rows: number, ids: Int32Array, target: BatchTarget) => tfjs.Scalar;

/** What a worker needs to build the same student and loss (all structured-cloneable). */
export interface WorkerSetup {
  /** the student as one inline ONNX protobuf (encodeInline), and the path its errors name */
  model: Uint8Array;
  path: string;
  trainable: string[];
  /** distill.kd's params */
  params: unknown;
  io: ModelIo;
  /** the student tensors that enter the hidden-state and attention-output losses */
  hidden: MatchedOutput[];
  attention: MatchedOutput[];
}

export interface StepRequest {
  weights: Record<string, Float32Array>;
  rows: number;
  ids: Int32Array;
  logits: Float32Array;
  hidden: [number, Float32Array][];
  attention: [number, Float32Array][];
}

export type WorkerReply = { ready: true } | { loss: number; grads: Record<string, Float32Array> } | { error: string };

/** Threads for `threads: 0`: both cores of the machines this was measured on, never more rows than the batch has. */
export function defaultThreads(batch: number): number {
  return Math.max(1, Math.min(2, availableParallelism(), batch));
}

/** Rows of each share: as equal as possible, larger ones first, empty ones dropped. */
export function splitRows(rows: number, shares: number): number[] {
  const n = Math.min(rows, shares);
  return Array.from({ length: n }, (_, i) => Math.floor(rows / n) + (i < rows % n ? 1 : 0));
}

export class BatchGradients {
  private readonly varByTfName: Map<string, string>;
  private readonly varList: tfjs.Variable[];

  private constructor(
    private readonly exec: OnnxExecutor,
    private readonly loss: BatchLoss,
    private readonly workers: GradWorker[],
  ) {
    this.varByTfName = new Map([...exec.variables].map(([init, v]) => [v.name, init]));
    this.varList = [...exec.variables.values()];
  }

  /** `threads` − 1 workers are started now (they load while the caller prepares data); 1 = this thread only. */
  static start(exec: OnnxExecutor, loss: BatchLoss, threads: number, setup: () => WorkerSetup): BatchGradients {
    const init = threads > 1 ? setup() : undefined;
    const workers = Array.from({ length: threads - 1 }, () => new GradWorker(init!));
    return new BatchGradients(exec, loss, workers);
  }

  get threads(): number {
    return this.workers.length + 1;
  }

  /** Loss and gradients (by initializer name; the caller owns the tensors) of `rows` windows of `seqLen` tokens. */
  async compute(ids: Int32Array, rows: number, seqLen: number, target: BatchTarget): Promise<{ loss: number; grads: Record<string, tfjs.Tensor> }> {
    const tf = this.exec.tf;
    const shares = splitRows(rows, this.threads);
    const starts = shares.map((_, i) => shares.slice(0, i).reduce((a, b) => a + b, 0));
    const part = (i: number): [Int32Array, BatchTarget] => {
      const [r0, r1] = [starts[i]!, starts[i]! + shares[i]!];
      const cut = (a: Float32Array) => a.subarray((a.length / rows) * r0, (a.length / rows) * r1);
      const cutEach = (m: Map<number, Float32Array>) => new Map([...m].map(([k, a]) => [k, cut(a)]));
      return [ids.subarray(r0 * seqLen, r1 * seqLen), { logits: cut(target.logits), hidden: cutEach(target.hidden), attention: cutEach(target.attention) }];
    };
    // the workers start on their shares before this thread takes its own
    const weights = shares.length > 1 ? Object.fromEntries([...this.exec.variables].map(([n, v]) => [n, v.dataSync() as Float32Array])) : {};
    const remote = shares.slice(1).map((r, k) => {
      const [i, t] = part(k + 1);
      return this.workers[k]!.step({ weights, rows: r, ids: i, logits: t.logits, hidden: [...t.hidden], attention: [...t.attention] });
    });
    // a worker's failure surfaces at the await below, or not at all when this thread's share throws first
    for (const r of remote) r.catch(() => {});
    const [ids0, target0] = part(0);
    const { value, grads } = tf.variableGrads(() => this.loss(shares[0]!, ids0, target0), this.varList);
    const local: Record<string, tfjs.Tensor> = {};
    for (const [tfName, g] of Object.entries(grads)) local[this.varByTfName.get(tfName)!] = g;
    const localLoss = value.dataSync()[0]!;
    value.dispose();
    if (remote.length === 0) return { loss: localLoss, grads: local };

    // weighted sum in share order
    const replies = await Promise.all(remote);
    const w = shares.map((r) => r / rows);
    let loss = w[0]! * localLoss;
    replies.forEach((r, k) => (loss += w[k + 1]! * r.loss));
    const out: Record<string, tfjs.Tensor> = {};
    for (const [name, g] of Object.entries(local)) {
      const sum = Float32Array.from(g.dataSync(), (x) => w[0]! * x);
      replies.forEach((r, k) => {
        const gk = r.grads[name]!;
        for (let j = 0; j < sum.length; j++) sum[j]! += w[k + 1]! * gk[j]!;
      });
      out[name] = tf.tensor(sum, g.shape);
      g.dispose();
    }
    return { loss, grads: out };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}

/** One worker thread and its one outstanding request. */
class GradWorker {
  private readonly worker: Worker;
  private readonly ready: Promise<void>;
  private pending: { resolve: (r: { loss: number; grads: Record<string, Float32Array> }) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;

  constructor(setup: WorkerSetup) {
    this.worker = new Worker(distillWorkerUrl('grad-worker'), { workerData: setup });
    let started!: () => void;
    let failed!: (e: Error) => void;
    this.ready = new Promise((res, rej) => ((started = res), (failed = rej)));
    this.ready.catch(() => {});
    const fail = (e: Error) => {
      this.failure ??= e;
      failed(e);
      this.pending?.reject(e);
      this.pending = undefined;
    };
    this.worker.on('message', (m: WorkerReply) => {
      if ('ready' in m) return started();
      if ('error' in m) return fail(new Error(`distill.kd gradient worker: ${m.error}`));
      this.pending?.resolve(m);
      this.pending = undefined;
    });
    this.worker.on('error', (e) => fail(e));
    this.worker.on('exit', (code) => fail(new Error(`distill.kd gradient worker exited (code ${code})`)));
  }

  async step(req: StepRequest): Promise<{ loss: number; grads: Record<string, Float32Array> }> {
    await this.ready;
    if (this.failure) throw this.failure;
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.worker.postMessage(req);
    });
  }

  async close(): Promise<void> {
    this.failure ??= new Error('closed');
    await this.worker.terminate();
  }
}
