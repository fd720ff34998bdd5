import type * as tfjs from '@tensorflow/tfjs';
import { lmFeeds, type ModelIo } from '../model/io.js';
import type { OnnxExecutor } from '../runtime/tfjs/executor.js';
import type { KdParams } from './kd-params.js';
import { klLoss } from './loss.js';
import type { TeacherTargetSource } from './teacher.js';

/** The held-out windows of early stopping (early-stop.ts), batched with the teacher's logits, and the student's KL on them. */

export interface HeldOutBatch {
  ids: Int32Array;
  rows: number;
  teacher: Float32Array;
}

/** Held-out windows in batches of up to batch_size rows, with the teacher's logits (fixed, so computed once). */
export async function heldOutBatches(rows: readonly Int32Array[], p: KdParams, teacher: TeacherTargetSource): Promise<HeldOutBatch[]> {
  const out: HeldOutBatch[] = [];
  for (let i = 0; i < rows.length; i += p.batch_size) {
    const part = rows.slice(i, i + p.batch_size);
    const ids = new Int32Array(part.length * p.seq_len);
    part.forEach((r, b) => ids.set(r, b * p.seq_len));
    out.push({ ids, rows: part.length, teacher: (await teacher.run(ids, part.length, p.seq_len)).logits });
  }
  return out;
}

/** Mean forward KL(teacher ‖ student) per token at T = 1 on the held-out windows. */
export function heldOutKl(exec: OnnxExecutor, p: KdParams, io: ModelIo, batches: readonly HeldOutBatch[]): number {
  const tf = exec.tf;
  let total = 0;
  let tokens = 0;
  for (const b of batches) {
    const kl = tf.tidy(() => {
      const out = exec.run(exec.feeds(lmFeeds(io, b.ids, b.rows, p.seq_len)), [io.outputName]);
      const logits = out[io.outputName]!;
      const V = logits.shape.at(-1)!;
      return klLoss(tf, tf.reshape(logits, [b.rows * p.seq_len, V]) as tfjs.Tensor2D, tf.tensor2d(b.teacher, [b.rows * p.seq_len, V]), 1, 'forward');
    });
    total += kl.dataSync()[0]! * b.rows * p.seq_len;
    tokens += b.rows * p.seq_len;
    kl.dispose();
  }
  return total / tokens;
}
