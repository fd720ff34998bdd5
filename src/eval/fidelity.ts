import { logSumExp } from './log-sum-exp.js';

export interface Fidelity {
  /** mean over positions of KL(reference ‖ model), nats */
  kl_mean: number;
  kl_p50: number;
  kl_p90: number;
  kl_p99: number;
  /** share of positions where both models rank the same class/token first */
  top1_agreement: number;
  /** mean over positions of the cosine between the two output vectors */
  cosine: number;
  positions: number;
}

/** Accumulates agreement between a reference model's outputs and a model's, one output vector at a time. */
export class FidelityAccumulator {
  private readonly kls: number[] = [];
  private agree = 0;
  private cosSum = 0;

  add(reference: Float32Array, model: Float32Array): void {
    const lr = logSumExp(reference);
    const lm = logSumExp(model);
    let kl = 0;
    let dot = 0;
    let nr = 0;
    let nm = 0;
    let ar = 0;
    let am = 0;
    for (let i = 0; i < reference.length; i++) {
      const logP = reference[i] - lr;
      kl += Math.exp(logP) * (logP - (model[i] - lm));
      dot += reference[i] * model[i];
      nr += reference[i] * reference[i];
      nm += model[i] * model[i];
      if (reference[i] > reference[ar]) ar = i;
      if (model[i] > model[am]) am = i;
    }
    this.kls.push(Math.max(kl, 0));
    if (ar === am) this.agree++;
    this.cosSum += nr > 0 && nm > 0 ? dot / Math.sqrt(nr * nm) : nr === nm ? 1 : 0;
  }

  result(): Fidelity {
    const n = this.kls.length;
    const sorted = Float64Array.from(this.kls).sort();
    const q = (p: number) => (n ? sorted[Math.min(n - 1, Math.floor(p * (n - 1) + 0.5))] : 0);
    return {
      kl_mean: n ? this.kls.reduce((a, b) => a + b, 0) / n : 0,
      kl_p50: q(0.5),
      kl_p90: q(0.9),
      kl_p99: q(0.99),
      top1_agreement: n ? this.agree / n : 1,
      cosine: n ? this.cosSum / n : 1,
      positions: n,
    };
  }
}
