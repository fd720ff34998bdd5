import { Worker } from 'node:worker_threads';
import type { ModelIo } from '../model/io.js';
import { UserError } from '../errors.js';
import type { TeacherSpec, TeacherTargetSource, TeacherTargets } from './teacher.js';
import { distillWorkerUrl } from './worker-url.js';

/**
 * The teacher in a worker thread (teacher-worker.ts) with its own ORT session built from the same
 * spec as a Teacher on this thread would be: the same targets, bit for bit. onnxruntime-node 1.30
 * runs a session synchronously on the calling thread, so on this thread the teacher's forward would
 * stall the student's step; in the worker, the forward for step n + 1 runs on another core while
 * this thread trains on step n. Requests may be outstanding several at a time; each reply carries
 * its request's id and transfers its arrays. A worker that fails (its session cannot load, it
 * throws, it exits) rejects every outstanding and later request with the error.
 */

export interface TeacherRequest {
  id: number;
  ids: Int32Array;
  batch: number;
  seqLen: number;
}

export type TeacherReply =
  | { id: number; logits: Float32Array; hidden: [number, Float32Array][]; attention: [number, Float32Array][] }
  /** without an id: the session could not be built, and nothing will run */
  | { id?: number; error: string; user: boolean };

export class TeacherThread implements TeacherTargetSource {
  private static started = 0;
  private static exited = 0;
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (t: TeacherTargets) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private failure: Error | undefined;
  readonly io: ModelIo;
  readonly hidden: ReadonlyMap<number, string>;
  readonly attention: ReadonlyMap<number, string>;

  /** Starts the worker, which builds its session while the caller goes on. spec.bytes moves to the worker (detached here), so the model is not held twice. */
  constructor(spec: TeacherSpec) {
    this.io = spec.io;
    this.hidden = spec.hidden;
    this.attention = spec.attention;
    const bytes = ownedBuffer(spec.bytes);
    this.worker = new Worker(distillWorkerUrl('teacher-worker'), { workerData: { ...spec, bytes }, transferList: [bytes.buffer as ArrayBuffer] });
    TeacherThread.started++;
    // an idle worker does not keep the process alive (run() refs it while replies are due)
    this.worker.unref();
    const where = `distill.kd's teacher thread (${spec.path})`;
    this.worker.on('message', (m: TeacherReply) => {
      if ('error' in m) {
        const e = m.user ? new UserError(m.error) : new Error(`distill.kd's teacher thread: ${m.error}`);
        if (m.id === undefined) return this.fail(e);
        return this.settle(m.id, (p) => p.reject(e));
      }
      this.settle(m.id, (p) => p.resolve({ logits: m.logits, hidden: new Map(m.hidden), attention: new Map(m.attention) }));
    });
    this.worker.on('error', (e) => this.fail(new Error(`${where} failed: ${e.message}`)));
    this.worker.on('messageerror', (e) => this.fail(new Error(`${where} sent a message that cannot be read: ${e.message}`)));
    this.worker.on('exit', (code) => {
      TeacherThread.exited++;
      this.fail(new Error(`${where} exited (code ${code})`));
    });
  }

  /** Teacher threads started and not yet exited in this process (tests check that every run ends its own). */
  static get running(): number {
    return TeacherThread.started - TeacherThread.exited;
  }

  run(ids: Int32Array, batch: number, seqLen: number): Promise<TeacherTargets> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ id, ids, batch, seqLen } satisfies TeacherRequest);
    });
  }

  /** Ends the worker; outstanding requests are rejected. */
  async close(): Promise<void> {
    this.fail(new Error('the teacher thread is closed'));
    await this.worker.terminate();
  }

  private settle(id: number, how: (p: { resolve: (t: TeacherTargets) => void; reject: (e: Error) => void }) => void): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
    how(p);
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    this.worker.unref();
  }
}

/** `a` over a buffer of its own (a copy when it is a view into a larger one), so that its buffer can be transferred. */
export function ownedBuffer<T extends Float32Array | Uint8Array>(a: T): T {
  return a.byteOffset === 0 && a.byteLength === a.buffer.byteLength && a.buffer instanceof ArrayBuffer ? a : (a.slice() as T);
}
