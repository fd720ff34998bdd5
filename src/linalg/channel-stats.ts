import type { FloatArray } from './backend.js';

/**
 * Per-input-channel activation statistics, streamed over calibration batches: Σ x per channel (the
 * mean bias correction needs), Σ x² per channel (Wanda's
 * ‖X_j‖₂ = sqrt of it; Sun et al. 2023) accumulated in float64, and max |x| per channel (SmoothQuant's
 * activation scale; Xiao et al. 2023), exact in float32. Plain loops: O(rows·dim).
 * Layouts: `add(X, rows)` takes channels-last [rows, dim]; `addChannelsFirst(X, n, spatial)` takes
 * conv inputs [n, dim, spatial] and counts n·spatial rows.
 */

abstract class ChannelAccumulator {
  readonly dim: number;
  protected rows = 0;

  constructor(dim: number) {
    if (!Number.isInteger(dim) || dim <= 0) throw new Error(`${this.constructor.name}: dim must be a positive integer, got ${dim}`);
    this.dim = dim;
  }

  /** rows (tokens or positions) added so far */
  get count(): number {
    return this.rows;
  }

  protected abstract take(x: number, j: number): void;

  add(X: FloatArray, rows: number): void {
    const d = this.dim;
    if (X.length !== rows * d) throw new Error(`${this.constructor.name}.add: X has ${X.length} elements, expected rows·dim = ${rows}·${d}`);
    this.addRows(X, rows);
    this.rows += rows;
  }

  addChannelsFirst(X: FloatArray, n: number, spatial: number): void {
    const d = this.dim;
    if (X.length !== n * d * spatial) throw new Error(`${this.constructor.name}.addChannelsFirst: X has ${X.length} elements, expected n·dim·spatial = ${n}·${d}·${spatial}`);
    for (let b = 0; b < n; b++) {
      for (let j = 0; j < d; j++) {
        const off = (b * d + j) * spatial;
        for (let p = 0; p < spatial; p++) this.take(X[off + p]!, j);
      }
    }
    this.rows += n * spatial;
  }

  protected abstract addRows(X: FloatArray, rows: number): void;
}

/** Σ x^power per channel in float64 (power 1: the sum, 2: the sum of squares). */
abstract class PowerSumAccumulator extends ChannelAccumulator {
  private readonly sum: Float64Array;

  constructor(
    dim: number,
    private readonly power: 1 | 2,
  ) {
    super(dim);
    this.sum = new Float64Array(dim);
  }

  protected take(x: number, j: number): void {
    this.sum[j] += this.power === 2 ? x * x : x;
  }

  protected addRows(X: FloatArray, rows: number): void {
    const d = this.dim;
    const s = this.sum;
    const square = this.power === 2;
    for (let r = 0; r < rows; r++) {
      const off = r * d;
      for (let j = 0; j < d; j++) {
        const x = X[off + j]!;
        s[j] += square ? x * x : x;
      }
    }
  }

  /** Σ x^power per channel (the accumulator's own buffer) */
  result(): Float64Array {
    return this.sum;
  }
}

export class SumSquaresAccumulator extends PowerSumAccumulator {
  constructor(dim: number) {
    super(dim, 2);
  }

  /** ‖X_j‖₂ per channel, a new array */
  norms(): Float64Array {
    return this.result().map(Math.sqrt);
  }
}

export class SumAccumulator extends PowerSumAccumulator {
  constructor(dim: number) {
    super(dim, 1);
  }
}

export class AbsMaxAccumulator extends ChannelAccumulator {
  private readonly max: Float32Array;

  constructor(dim: number) {
    super(dim);
    this.max = new Float32Array(dim);
  }

  protected take(x: number, j: number): void {
    const a = Math.abs(x);
    if (a > this.max[j]!) this.max[j] = a;
  }

  protected addRows(X: FloatArray, rows: number): void {
    const d = this.dim;
    const m = this.max;
    for (let r = 0; r < rows; r++) {
      const off = r * d;
      for (let j = 0; j < d; j++) {
        const a = Math.abs(X[off + j]!);
        if (a > m[j]!) m[j] = a;
      }
    }
  }

  /** max |x| per channel (the accumulator's own buffer) */
  result(): Float32Array {
    return this.max;
  }
}
