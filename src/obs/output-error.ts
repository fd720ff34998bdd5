import type { InputStats } from '../calibrate/stats.js';
import { matmul } from '../linalg/gemm.js';
import { phases } from '../util/phase-timer.js';

/**
 * The layer's reconstruction error on its calibration inputs, per token:
 * ‖(W − Ŵ) Xᵀ‖²_F / n = Σ_r Δw_r (XᵀX) Δw_rᵀ / n, from the accumulated XᵀX (float64, one GEMM).
 */
export async function reconstructionError(W: Float32Array, Wq: Float32Array, rows: number, stats: InputStats): Promise<number> {
  return phases.time('solve.error', () => outputError(W, Wq, rows, stats));
}

async function outputError(W: Float32Array, Wq: Float32Array, rows: number, stats: InputStats): Promise<number> {
  const d = stats.dim;
  const dW = new Float64Array(rows * d);
  for (let i = 0; i < dW.length; i++) dW[i] = W[i]! - Wq[i]!;
  const P = await matmul(dW, stats.xtx!, rows, d, d);
  let total = 0;
  for (let i = 0; i < dW.length; i++) total += P[i]! * dW[i]!;
  return total / Math.max(stats.rows, 1);
}

/** ‖W − Ŵ‖_F / ‖W‖_F in float64 (0 for an all-zero W equal to Ŵ). */
export function relativeError(W: ArrayLike<number>, approx: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < W.length; i++) {
    num += (W[i]! - approx[i]!) ** 2;
    den += W[i]! ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-300));
}
