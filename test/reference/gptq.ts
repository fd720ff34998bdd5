/**
 * Float64 plain-loop reference of GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training
 * Quantization for Generative Pre-trained Transformers", Algorithm 1), written from the paper and
 * matched to the defaults of the authors' code (IST-DASLab/gptq `fasterquant`: percdamp 0.01,
 * blocksize 128, dead inputs H_jj = 1 with W[:, j] = 0, act_order by descending diag(H), per-channel
 * grid found once from W, groups found when the loop reaches them unless static). Notation: W
 * [rows = out, cols = in], H = 2/n·XᵀX, Hinv the upper Cholesky factor of the dampened H⁻¹.
 * Deliberately independent of src/linalg and src/obs: its own Cholesky, no ORT, no float32.
 * The grid is the project's (src/quantize/grid.ts, re-derived here): symmetric codes ±(2^(b−1) − 1)
 * around zero 2^(b−1); asymmetric [min(w, 0), max(w, 0)] onto 0..2^b − 1.
 * The Hessian helpers here are shared with the SparseGPT reference.
 */

/** H = 2/n · XᵀX */
export function hessianFromGram(xtx: ArrayLike<number>, n: number, cols: number): Float64Array {
  const H = new Float64Array(cols * cols);
  for (let i = 0; i < H.length; i++) H[i] = (2 / n) * xtx[i]!;
  return H;
}

/** lower L with A = L·Lᵀ (A symmetric positive definite), textbook Cholesky–Banachiewicz */
export function choleskyLowerRef(A: Float64Array, n: number): Float64Array {
  const L = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i * n + j]!;
      for (let k = 0; k < j; k++) s -= L[i * n + k]! * L[j * n + k]!;
      if (i === j) {
        if (!(s > 0)) throw new Error(`choleskyLowerRef: pivot ${i} is ${s}`);
        L[i * n + i] = Math.sqrt(s);
      } else {
        L[i * n + j] = s / L[j * n + j]!;
      }
    }
  }
  return L;
}

/** A⁻¹ from A = L·Lᵀ, one unit vector at a time (forward then back substitution), symmetrised */
export function choleskyInverseRef(L: Float64Array, n: number): Float64Array {
  const inv = new Float64Array(n * n);
  const y = new Float64Array(n);
  for (let c = 0; c < n; c++) {
    for (let i = 0; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let k = 0; k < i; k++) s -= L[i * n + k]! * y[k]!;
      y[i] = s / L[i * n + i]!;
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = y[i]!;
      for (let k = i + 1; k < n; k++) s -= L[k * n + i]! * inv[k * n + c]!;
      inv[i * n + c] = s / L[i * n + i]!;
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) inv[i * n + j] = inv[j * n + i] = (inv[i * n + j]! + inv[j * n + i]!) / 2;
  return inv;
}

export interface PreparedRef {
  /** upper U with H⁻¹ = Uᵀ·U, in `perm` order */
  Hinv: Float64Array;
  /** W with dead columns zeroed, columns in `perm` order */
  W: Float64Array;
  /** column order used: position i holds input perm[i] */
  perm: Int32Array;
  dead: number[];
}

/** dead inputs, optional act_order permutation, dampening, and Hinv = chol(H⁻¹)ᵀ, as in the authors' code */
export function prepareRef(W0: ArrayLike<number>, rows: number, cols: number, H0: ArrayLike<number>, opts: { percdamp: number; actOrder?: boolean }): PreparedRef {
  const H = Float64Array.from(H0);
  const Wn = Float64Array.from(W0);
  // dead inputs: never active, so their weights cannot matter; H_jj = 1 keeps H invertible
  const dead: number[] = [];
  for (let j = 0; j < cols; j++) {
    if (H[j * cols + j] !== 0) continue;
    dead.push(j);
    H[j * cols + j] = 1;
    for (let r = 0; r < rows; r++) Wn[r * cols + j] = 0;
  }
  const perm = Int32Array.from({ length: cols }, (_, i) => i);
  if (opts.actOrder) perm.sort((a, b) => H[b * cols + b]! - H[a * cols + a]! || a - b);
  const Hp = new Float64Array(cols * cols);
  for (let a = 0; a < cols; a++) for (let b = 0; b < cols; b++) Hp[a * cols + b] = H[perm[a]! * cols + perm[b]!]!;
  const W = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) W[r * cols + j] = Wn[r * cols + perm[j]!]!;
  // dampening: λ · mean(diag H)
  let trace = 0;
  for (let j = 0; j < cols; j++) trace += Hp[j * cols + j]!;
  for (let j = 0; j < cols; j++) Hp[j * cols + j] += (opts.percdamp * trace) / cols;
  // Hinv = upper Cholesky factor of H⁻¹ (torch.linalg.cholesky(cholesky_inverse(cholesky(H)), upper=True))
  const Hi = choleskyInverseRef(choleskyLowerRef(Hp, cols), cols);
  const L2 = choleskyLowerRef(Hi, cols);
  const U = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) for (let j = i; j < cols; j++) U[i * cols + j] = L2[j * cols + i]!;
  return { Hinv: U, W, perm, dead };
}

/** ‖(W − Ŵ)X‖²_F = Σ_r Δw_r · XᵀX · Δw_rᵀ, float64 loops */
export function layerErrorRef(W: ArrayLike<number>, What: ArrayLike<number>, rows: number, cols: number, xtx: ArrayLike<number>): number {
  let total = 0;
  const dw = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) dw[j] = W[r * cols + j]! - What[r * cols + j]!;
    for (let a = 0; a < cols; a++) {
      if (dw[a] === 0) continue;
      let s = 0;
      for (let b = 0; b < cols; b++) s += xtx[a * cols + b]! * dw[b]!;
      total += dw[a]! * s;
    }
  }
  return total;
}

/** column `j` of W [rows, cols] back in natural input order */
export function unpermuteRef(W: Float64Array, rows: number, cols: number, perm: Int32Array): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) out[r * cols + perm[j]!] = W[r * cols + j]!;
  return out;
}

export interface GridRef {
  scale: number;
  zero: number;
  maxq: number;
}

/** the project's grid for one row's group of values */
export function gridRef(values: ArrayLike<number>, bits: number, symmetric: boolean): GridRef {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) [min, max] = [Math.min(min, values[i]!), Math.max(max, values[i]!)];
  const maxq = 2 ** bits - 1;
  if (symmetric) {
    const amax = Math.max(Math.abs(min), Math.abs(max));
    return { scale: amax > 0 ? amax / (2 ** (bits - 1) - 1) : 1, zero: 2 ** (bits - 1), maxq };
  }
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  if (hi === lo) return { scale: 1, zero: 0, maxq };
  const scale = (hi - lo) / maxq;
  return { scale, zero: Math.min(maxq, Math.max(0, Math.round(-lo / scale))), maxq };
}

export function quantizeRef(w: number, g: GridRef): number {
  const q = Math.min(g.maxq, Math.max(0, Math.round(w / g.scale) + g.zero));
  return g.scale * (q - g.zero);
}

export interface GptqRefParams {
  bits: number;
  /** inputs per group; 0 = per output channel */
  groupSize: number;
  symmetric: boolean;
  blockSize?: number;
  percdamp?: number;
  actOrder?: boolean;
  /** grids of every group fixed from W before the loop (authors' --static-groups); default: found when the loop reaches the group */
  staticGroups?: boolean;
}

/**
 * GPTQ on one layer. W [rows, cols] and H [cols, cols] (2/n·XᵀX) are not modified; returns the
 * dequantized weight in natural column order and the OBS loss Σ (w − q)²/[H⁻¹]_cc / 2.
 */
export function gptqReference(W0: ArrayLike<number>, rows: number, cols: number, H: ArrayLike<number>, p: GptqRefParams): { W: Float64Array; loss: number } {
  const B = p.blockSize ?? 128;
  const g = p.groupSize > 0 ? p.groupSize : cols;
  // the authors find the per-channel grid before zeroing dead columns
  const channelGrids = p.groupSize > 0 ? undefined : rowGrids(W0, rows, cols, 0, cols, p);
  const { W, Hinv, perm } = prepareRef(W0, rows, cols, H, { percdamp: p.percdamp ?? 0.01, actOrder: p.actOrder });
  let staticGrids: GridRef[][] | undefined;
  if (p.groupSize > 0 && p.staticGroups) {
    // from the (dead-zeroed) weights in natural order, before any update
    const natural = unpermuteRef(W, rows, cols, perm);
    staticGrids = Array.from({ length: cols / g }, (_, k) => rowGrids(natural, rows, cols, k * g, g, p));
  }
  const Q = new Float64Array(rows * cols);
  let loss = 0;
  let grids = channelGrids;
  for (let i1 = 0; i1 < cols; i1 += B) {
    const i2 = Math.min(i1 + B, cols);
    const count = i2 - i1;
    const W1 = new Float64Array(rows * count);
    for (let r = 0; r < rows; r++) for (let c = 0; c < count; c++) W1[r * count + c] = W[r * cols + i1 + c]!;
    const Err1 = new Float64Array(rows * count);
    for (let c = 0; c < count; c++) {
      const i = i1 + c;
      if (staticGrids) grids = staticGrids[Math.floor(perm[i]! / g)];
      // dynamic groups read W as the lazy updates left it (the authors' code does the same)
      else if (p.groupSize > 0 && i % g === 0) grids = rowGrids(W, rows, cols, i, Math.min(g, cols - i), p);
      const d = Hinv[i * cols + i]!;
      for (let r = 0; r < rows; r++) {
        const w = W1[r * count + c]!;
        const q = quantizeRef(w, grids![r]!);
        Q[r * cols + i] = q;
        const err = (w - q) / d;
        loss += (err * err) / 2;
        Err1[r * count + c] = err;
        // propagate within the block
        for (let k = c + 1; k < count; k++) W1[r * count + k] -= err * Hinv[i * cols + i1 + k]!;
      }
    }
    // lazy batch update of the columns after the block: W[:, i2:] −= Err1 · Hinv[i1:i2, i2:]
    for (let r = 0; r < rows; r++) {
      for (let j = i2; j < cols; j++) {
        let s = 0;
        for (let c = 0; c < count; c++) s += Err1[r * count + c]! * Hinv[(i1 + c) * cols + j]!;
        W[r * cols + j] -= s;
      }
    }
  }
  return { W: unpermuteRef(Q, rows, cols, perm), loss };
}

function rowGrids(W: ArrayLike<number>, rows: number, cols: number, start: number, len: number, p: GptqRefParams): GridRef[] {
  return Array.from({ length: rows }, (_, r) => gridRef(Array.from({ length: len }, (_, k) => W[r * cols + start + k]!), p.bits, p.symmetric));
}
