import type * as tfjs from '@tensorflow/tfjs';
import type { Tf } from '../runtime/tf.js';

export type KlDirection = 'forward' | 'reverse';

/**
 * Mean over rows of KL between teacher and student token distributions at temperature T.
 * forward: KL(p_T ‖ p_S), the classic distillation loss, mass-covering; reverse: KL(p_S ‖ p_T)
 * (MiniLLM), mode-seeking. The gradient of one row's forward KL w.r.t. the student logits is
 * (p_S − p_T)/T; no T² factor is applied, so the learning rate means the same at every T.
 * Logits are [rows, vocab].
 */
export function klLoss(tf: Tf, student: tfjs.Tensor2D, teacher: tfjs.Tensor2D, temperature: number, direction: KlDirection): tfjs.Scalar {
  return tf.tidy(() => {
    const logS = tf.logSoftmax(tf.div(student, temperature));
    const logT = tf.logSoftmax(tf.div(teacher, temperature));
    const [logP, logQ] = direction === 'forward' ? [logT, logS] : [logS, logT];
    const perRow = tf.sum(tf.mul(tf.exp(logP), tf.sub(logP, logQ)), -1);
    return tf.mean(perRow) as tfjs.Scalar;
  });
}

/** Mean next-token cross-entropy of `logits` [rows, vocab] against integer `labels` [rows]. */
export function crossEntropy(tf: Tf, logits: tfjs.Tensor2D, labels: tfjs.Tensor1D): tfjs.Scalar {
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits);
    const picked = tf.sum(tf.mul(logp, tf.oneHot(labels, logits.shape[1])), -1);
    return tf.neg(tf.mean(picked)) as tfjs.Scalar;
  });
}

/** Mean squared difference of two hidden states of the same shape. */
export function hiddenMse(tf: Tf, student: tfjs.Tensor, teacher: tfjs.Tensor): tfjs.Scalar {
  return tf.tidy(() => tf.mean(tf.squaredDifference(student, teacher)) as tfjs.Scalar);
}
