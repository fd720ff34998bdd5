import type * as tfjs from '@tensorflow/tfjs';
import { lmFeeds, type ModelIo } from '../model/io.js';
import type { OnnxExecutor } from '../runtime/tfjs/executor.js';
import type { KdParams } from './kd-params.js';
import { crossEntropy, hiddenMse, klLoss } from './loss.js';
import type { MatchedOutput } from './parallel.js';
import type { TeacherTargets } from './teacher.js';

/** The training loss of one batch (kd.ts's terms, weighted by params.loss_weights; also run by the data-parallel workers: parallel.ts). */
export function studentLoss(
  exec: OnnxExecutor,
  p: Pick<KdParams, 'batch_size' | 'seq_len' | 'temperature' | 'kl' | 'loss_weights'>,
  io: ModelIo,
  ids: Int32Array,
  target: TeacherTargets,
  hidden: readonly MatchedOutput[],
  attention: readonly MatchedOutput[] = [],
): tfjs.Scalar {
  const tf = exec.tf;
  const { batch_size: B, seq_len: S } = p;
  const feeds = exec.feeds(lmFeeds(io, ids, B, S));
  const input = feeds[io.inputName]!;
  const out = exec.run(feeds, [io.outputName, ...hidden.map((b) => b.output), ...attention.map((b) => b.output)]);
  const logits3 = out[io.outputName]!;
  const V = logits3.shape.at(-1)!;
  const student = tf.reshape(logits3, [B * S, V]) as tfjs.Tensor2D;
  const teacherLogits = tf.tensor2d(target.logits, [B * S, V]);
  let loss = tf.mul(klLoss(tf, student, teacherLogits, p.temperature, p.kl), p.loss_weights.kl) as tfjs.Scalar;
  if (p.loss_weights.ce > 0) {
    const next = tf.reshape(tf.slice(logits3, [0, 0, 0], [B, S - 1, V]), [B * (S - 1), V]) as tfjs.Tensor2D;
    const labels = tf.reshape(tf.slice(input, [0, 1], [B, S - 1]), [B * (S - 1)]) as tfjs.Tensor1D;
    loss = tf.add(loss, tf.mul(crossEntropy(tf, next, labels), p.loss_weights.ce));
  }
  const mse = (matched: readonly MatchedOutput[], targets: Map<number, Float32Array>, weight: number) => {
    for (const b of matched) {
      const s = out[b.output]!;
      loss = tf.add(loss, tf.mul(hiddenMse(tf, s, tf.tensor(targets.get(b.index)!, s.shape)), weight / matched.length));
    }
  };
  mse(hidden, target.hidden, p.loss_weights.hidden);
  mse(attention, target.attention, p.loss_weights.attention);
  return loss;
}
