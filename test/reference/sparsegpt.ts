/**
 * Float64 plain-loop reference of SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language
 * Models Can Be Accurately Pruned in One-Shot", Algorithm 1), written from the paper and matched to
 * the defaults of the authors' code (IST-DASLab/sparsegpt `fasterprune`: percdamp 0.01, blocksize
 * 128 for both the lazy updates and the adaptive mask, N:M chosen every m columns on the current
 * weights). Notation: W [rows = out, cols = in], H = 2/n·XᵀX, Hinv the upper Cholesky factor of the
 * dampened H⁻¹; a weight's saliency is w² / [Hinv]²_cc. Independent of src/linalg and src/obs.
 *
 * One deliberate difference from the authors' code: a mask block prunes exactly
 * round(sparsity · numel) weights (ties by position); theirs takes every score ≤ the
 * int(sparsity · numel)-th smallest, one weight more per block.
 */
import { prepareRef } from './gptq.js';

export interface SparseGptRefParams {
  /** fraction pruned in each mask block (unstructured) */
  sparsity: number;
  /** N:M: keep n of every m consecutive inputs of a row (overrides sparsity) */
  nm?: { n: number; m: number };
  /** lazy-update block B */
  blockSize?: number;
  /** adaptive-mask block Bs; must divide B (the authors use Bs = B) */
  maskBlockSize?: number;
  percdamp?: number;
}

/**
 * SparseGPT on one layer. W [rows, cols] and H [cols, cols] are not modified; returns the pruned,
 * updated weight, the mask (1 = pruned) and the OBS loss Σ w²/[Hinv]²_cc / 2 over pruned weights.
 */
export function sparsegptReference(W0: ArrayLike<number>, rows: number, cols: number, H: ArrayLike<number>, p: SparseGptRefParams): { W: Float64Array; mask: Uint8Array; loss: number } {
  const B = p.blockSize ?? 128;
  const Bs = p.maskBlockSize ?? B;
  if (B % Bs !== 0) throw new Error(`sparsegptReference: mask block ${Bs} must divide block ${B}`);
  if (p.nm && B % p.nm.m !== 0) throw new Error(`sparsegptReference: block ${B} is not a multiple of m = ${p.nm.m}`);
  const { W, Hinv } = prepareRef(W0, rows, cols, H, { percdamp: p.percdamp ?? 0.01 });
  const mask = new Uint8Array(rows * cols);
  let loss = 0;
  for (let i1 = 0; i1 < cols; i1 += B) {
    const i2 = Math.min(i1 + B, cols);
    const count = i2 - i1;
    const W1 = new Float64Array(rows * count);
    for (let r = 0; r < rows; r++) for (let c = 0; c < count; c++) W1[r * count + c] = W[r * cols + i1 + c]!;
    const Err1 = new Float64Array(rows * count);
    const score = (r: number, c: number) => W1[r * count + c]! ** 2 / Hinv[(i1 + c) * cols + i1 + c]! ** 2;
    for (let c = 0; c < count; c++) {
      if (p.nm && c % p.nm.m === 0) selectNm(mask, rows, cols, i1 + c, Math.min(p.nm.m, count - c), p.nm, (r, k) => score(r, c + k));
      else if (!p.nm && c % Bs === 0) selectBlock(mask, rows, cols, i1 + c, Math.min(Bs, count - c), p.sparsity, (r, k) => score(r, c + k));
      const i = i1 + c;
      const d = Hinv[i * cols + i]!;
      for (let r = 0; r < rows; r++) {
        const w = W1[r * count + c]!;
        const q = mask[r * cols + i] ? 0 : w;
        W1[r * count + c] = q;
        const err = (w - q) / d;
        Err1[r * count + c] = err;
        if (err === 0) continue;
        loss += (err * err) / 2;
        // optimal-brain-surgeon update of the block's later columns
        for (let k = c + 1; k < count; k++) W1[r * count + k] -= err * Hinv[i * cols + i1 + k]!;
      }
    }
    for (let r = 0; r < rows; r++) for (let c = 0; c < count; c++) W[r * cols + i1 + c] = W1[r * count + c]!;
    // lazy batch update: W[:, i2:] −= Err1 · Hinv[i1:i2, i2:]
    for (let r = 0; r < rows; r++) {
      for (let j = i2; j < cols; j++) {
        let s = 0;
        for (let c = 0; c < count; c++) s += Err1[r * count + c]! * Hinv[(i1 + c) * cols + j]!;
        W[r * cols + j] -= s;
      }
    }
  }
  return { W, mask, loss };
}

/** adaptive mask: the round(sparsity · rows · width) least salient weights of columns [start, start + width) */
function selectBlock(mask: Uint8Array, rows: number, cols: number, start: number, width: number, sparsity: number, score: (r: number, k: number) => number): void {
  const entries: { s: number; r: number; k: number }[] = [];
  for (let r = 0; r < rows; r++) for (let k = 0; k < width; k++) entries.push({ s: score(r, k), r, k });
  entries.sort((a, b) => a.s - b.s || a.r - b.r || a.k - b.k);
  const count = Math.round(sparsity * rows * width);
  for (const e of entries.slice(0, count)) mask[e.r * cols + start + e.k] = 1;
}

/** N:M: in each row the m − n least salient of columns [start, start + width) */
function selectNm(mask: Uint8Array, rows: number, cols: number, start: number, width: number, nm: { n: number; m: number }, score: (r: number, k: number) => number): void {
  for (let r = 0; r < rows; r++) {
    const order = Array.from({ length: width }, (_, k) => k).sort((a, b) => score(r, a) - score(r, b) || a - b);
    for (const k of order.slice(0, nm.m - nm.n)) mask[r * cols + start + k] = 1;
  }
}
