import { UserError } from '../errors.js';

/**
 * Early stopping for distillation: a slice of the training windows is held out, the student's KL to
 * the teacher on it is measured every `every` steps, and the variables of the best measurement are
 * what the pass keeps. With `patience` > 0, training stops after that many measurements in a row
 * without a new best.
 */

/** The last `count` windows held out, the rest for training (the split is the same on every run). */
export function splitHeldOut(rows: readonly Int32Array[], count: number, where: string): { train: Int32Array[]; heldOut: Int32Array[] } {
  if (count === 0) return { train: [...rows], heldOut: [] };
  if (count >= rows.length) throw new UserError(`${where}.params.held_out: ${count} held-out windows leave none of the ${rows.length} for training; lower held_out or raise samples`);
  return { train: rows.slice(0, rows.length - count), heldOut: rows.slice(rows.length - count) };
}

export interface Measurement {
  step: number;
  score: number;
}

/** The best state seen so far, by a score where lower is better. */
export class BestState<S> {
  best: Measurement | undefined;
  private state: S | undefined;
  private sinceBest = 0;
  readonly history: Measurement[] = [];

  constructor(private readonly patience: number) {}

  /** Records a measurement; `take` is called (to copy the state) only when it is a new best. Returns whether to stop. */
  offer(step: number, score: number, take: () => S): boolean {
    this.history.push({ step, score });
    if (!this.best || score < this.best.score) {
      this.best = { step, score };
      this.state = take();
      this.sinceBest = 0;
      return false;
    }
    this.sinceBest++;
    return this.patience > 0 && this.sinceBest >= this.patience;
  }

  /** The state of the best measurement, when it was not the last one (the caller then restores it). */
  bestIfNotLast(): S | undefined {
    const last = this.history.at(-1);
    return this.best && last && last.step !== this.best.step ? this.state : undefined;
  }
}
