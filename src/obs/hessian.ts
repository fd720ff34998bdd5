import { UserError } from '../errors.js';
import { dampen, fixDeadColumns, hessianInverseUpperCholesky, NotPositiveDefiniteError, zeroColumns } from '../linalg/cholesky.js';
import type { InputStats } from '../calibrate/stats.js';
import { phases } from '../util/phase-timer.js';

/**
 * From calibration statistics to what the OBS loop needs: H = 2/n · XᵀX (float64), dead inputs
 * (H_jj = 0: the input never fires) get H_jj = 1 and their weights zeroed, H += λ·mean(diag H)·I,
 * and the upper Cholesky factor of H⁻¹. `perm` (act_order) reorders inputs by descending H_jj first.
 */
export interface PreparedHessian {
  Hinv: Float64Array;
  dead: number;
  /** input order used (identity unless act_order) */
  perm?: Int32Array;
}

/**
 * Hinv depends only on the statistics and the options, so layers that read the same input (q/k/v,
 * gate/up) share one factorization: it is kept per InputStats object for as long as that object
 * lives. Callers only read Hinv and perm.
 */
const prepared = new WeakMap<InputStats, Map<string, PreparedHessian & { deadColumns: number[] }>>();

export async function prepareHessian(
  stats: InputStats,
  W: Float32Array,
  rows: number,
  opts: { dampening: number; actOrder?: boolean; pass: string; layer: string },
): Promise<PreparedHessian> {
  return phases.time('solve.hessian', async () => {
    const key = `${opts.dampening}/${opts.actOrder ?? false}`;
    let byOptions = prepared.get(stats);
    let p = byOptions?.get(key);
    if (!p) {
      p = await prepare(stats, opts);
      if (!byOptions) prepared.set(stats, (byOptions = new Map()));
      byOptions.set(key, p);
    }
    zeroColumns(W, rows, stats.dim, p.deadColumns);
    return { Hinv: p.Hinv, dead: p.dead, perm: p.perm };
  });
}

async function prepare(stats: InputStats, opts: { dampening: number; actOrder?: boolean; pass: string; layer: string }): Promise<PreparedHessian & { deadColumns: number[] }> {
  const n = stats.dim;
  if (!stats.xtx) throw new Error(`${opts.pass}: no Hessian for '${opts.layer}'`);
  const H = new Float64Array(n * n);
  const scale = 2 / Math.max(stats.rows, 1);
  for (let i = 0; i < H.length; i++) H[i] = stats.xtx[i]! * scale;
  // mask dead Hessian columns: an input that never fires gets H_jj = 1 and zero weights
  const deadColumns = fixDeadColumns(H, n);
  const dead = deadColumns.length;
  let perm: Int32Array | undefined;
  let Hp = H;
  if (opts.actOrder) {
    perm = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => H[b * n + b]! - H[a * n + a]! || a - b);
    Hp = new Float64Array(n * n);
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) Hp[a * n + b] = H[perm[a]! * n + perm[b]!]!;
  }
  dampen(Hp, n, opts.dampening);
  try {
    return { Hinv: await hessianInverseUpperCholesky(Hp, n), dead, perm, deadColumns };
  } catch (e) {
    if (e instanceof NotPositiveDefiniteError) {
      throw new UserError(
        `${opts.pass}: Hessian of '${opts.layer}' is not positive definite after dampening ${opts.dampening}. Raise params.dampening or add calibration samples (got ${stats.rows} rows).`,
      );
    }
    throw e;
  }
}

/** Columns of W [rows, cols] in `perm` order (and back with the inverse). */
export function permuteColumns(W: Float32Array, rows: number, cols: number, perm: Int32Array, inverse = false): Float32Array {
  const out = new Float32Array(W.length);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let j = 0; j < cols; j++) {
      if (inverse) out[o + perm[j]!] = W[o + j]!;
      else out[o + j] = W[o + perm[j]!]!;
    }
  }
  return out;
}
