/**
 * The optimal-brain-surgeon column loop SparseGPT (Frantar & Alistarh 2023) and GPTQ (Frantar et
 * al. 2022) share. Notation as in their reference code: W [rows, cols] float32 row-major, the layer's
 * weight with inputs as columns; Hinv the upper Cholesky factor of the dampened inverse Hessian
 * (float64 in, used as float32 like the reference); columns are processed in blocks of `blockSize`.
 * For each column i the method decides q = W[:, i] after its rule (a pruning mask, a quantization
 * grid); the error (w − q)/Hinv[i,i] is propagated to the block's later columns at once and to the
 * columns after the block by one GEMM (lazy batch update).
 */
import { matmul } from '../linalg/gemm.js';
import { phases } from '../util/phase-timer.js';

export interface ColumnRule {
  /** called when a block [i1, i2) starts, with the block's columns [rows, count] and Hinv's block diagonal */
  beginBlock?(i1: number, i2: number, W1: Float32Array, hinvDiag: Float32Array): void;
  /** the new values of column i (global index), given its current values w; writes into q */
  column(i: number, w: Float32Array, q: Float32Array): void;
}

export interface BlockLoopResult {
  /** Σ (w − q)² / Hinv[i,i]² / 2 over all columns: the OBS estimate of the layer's output error */
  loss: number;
}

/** In place: W becomes the compressed weight. */
export async function obsBlockLoop(W: Float32Array, rows: number, cols: number, Hinv: Float64Array, blockSize: number, rule: ColumnRule): Promise<BlockLoopResult> {
  return phases.time('solve.obs', () => blockLoop(W, rows, cols, Hinv, blockSize, rule));
}

async function blockLoop(W: Float32Array, rows: number, cols: number, Hinv: Float64Array, blockSize: number, rule: ColumnRule): Promise<BlockLoopResult> {
  let loss = 0;
  const w = new Float32Array(rows);
  const q = new Float32Array(rows);
  for (let i1 = 0; i1 < cols; i1 += blockSize) {
    const i2 = Math.min(i1 + blockSize, cols);
    const count = i2 - i1;
    // copy the block's columns into a contiguous [rows, count] buffer
    const W1 = new Float32Array(rows * count);
    for (let r = 0; r < rows; r++) W1.set(W.subarray(r * cols + i1, r * cols + i2), r * count);
    const Hinv1 = new Float32Array(count * count);
    for (let a = 0; a < count; a++) for (let b = 0; b < count; b++) Hinv1[a * count + b] = Hinv[(i1 + a) * cols + i1 + b]!;
    const diag = new Float32Array(count);
    for (let a = 0; a < count; a++) diag[a] = Hinv1[a * count + a]!;
    rule.beginBlock?.(i1, i2, W1, diag);
    const Err1 = new Float32Array(rows * count);
    for (let i = 0; i < count; i++) {
      for (let r = 0; r < rows; r++) w[r] = W1[r * count + i]!;
      rule.column(i1 + i, w, q);
      const d = diag[i]!;
      // propagate this column's error to the block's remaining columns
      for (let r = 0; r < rows; r++) {
        const e = (w[r]! - q[r]!) / d;
        loss += (e * e) / 2;
        Err1[r * count + i] = e;
        const row = r * count;
        W1[row + i] = q[r]!;
        if (e === 0) continue;
        for (let j = i + 1; j < count; j++) W1[row + j]! -= e * Hinv1[i * count + j]!;
      }
    }
    for (let r = 0; r < rows; r++) W.set(W1.subarray(r * count, (r + 1) * count), r * cols + i1);
    if (i2 === cols) break;
    // propagate the block's error to every later column: W[:, i2:] -= Err1 · Hinv[i1:i2, i2:]
    const rest = cols - i2;
    const HinvRest = new Float32Array(count * rest);
    for (let a = 0; a < count; a++) for (let b = 0; b < rest; b++) HinvRest[a * rest + b] = Hinv[(i1 + a) * cols + i2 + b]!;
    const update = (await phases.time('solve.obs-gemm', () => matmul(Err1, HinvRest, rows, count, rest))) as Float32Array;
    for (let r = 0; r < rows; r++) {
      const off = r * cols + i2;
      for (let b = 0; b < rest; b++) W[off + b]! -= update[r * rest + b]!;
    }
  }
  return { loss };
}
