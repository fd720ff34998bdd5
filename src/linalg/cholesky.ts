import { reverseBoth, symmetrize, transpose } from './blocks.js';
import { matmul } from './gemm.js';
import { invertLower, solveLowerInPlace, solveUpperInPlace } from './triangular.js';

/** size below which a diagonal block is factored in JS (n³/3 work) */
const CHOL_BASE = 192;

/**
 * Cholesky factorization A = L·Lᵀ and what SparseGPT/GPTQ build on it (Frantar et al. 2022, 2023):
 * H is the layer Hessian 2/n·XᵀX, and Hinv's upper Cholesky factor drives the column-by-column updates.
 * Working precision float64 throughout. Recursive: L11 = chol(A11); L21 = A21·L11⁻ᵀ (triangular solve);
 * A22 −= L21·L21ᵀ (GEMM through MLAS DGEMM); L22 = chol(A22); blocks of ≤ CHOL_BASE rows run in JS.
 */

/** A is not (numerically) positive definite: the pivot `pivot` (0-based column) came out ≤ 0 or NaN. */
export class NotPositiveDefiniteError extends Error {
  constructor(
    readonly pivot: number,
    readonly value: number,
    readonly n: number,
  ) {
    super(`matrix is not positive definite: Cholesky pivot ${pivot} of ${n} is ${value}`);
    this.name = 'NotPositiveDefiniteError';
  }
}

/** factors the n×n block of M at (o, o) in place (leading dimension ld), reading and writing its lower triangle */
function cholBase(M: Float64Array, ld: number, o: number, n: number, total: number): void {
  for (let j = 0; j < n; j++) {
    const rj = (o + j) * ld + o;
    let d = M[rj + j]!;
    for (let p = 0; p < j; p++) d -= M[rj + p]! * M[rj + p]!;
    if (!(d > 0)) throw new NotPositiveDefiniteError(o + j, d, total);
    const ljj = Math.sqrt(d);
    M[rj + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      const ri = (o + i) * ld + o;
      let s = M[ri + j]!;
      for (let p = 0; p < j; p++) s -= M[ri + p]! * M[rj + p]!;
      M[ri + j] = s / ljj;
    }
  }
}

/** rows×cols block of M at (r0, c0), transposed into a new cols×rows array (cache-blocked) */
function getBlockT(M: Float64Array, ld: number, r0: number, c0: number, rows: number, cols: number): Float64Array {
  const T = new Float64Array(rows * cols);
  for (let i0 = 0; i0 < rows; i0 += 32) {
    for (let j0 = 0; j0 < cols; j0 += 32) {
      const i1 = Math.min(rows, i0 + 32);
      const j1 = Math.min(cols, j0 + 32);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) T[j * rows + i] = M[(r0 + i) * ld + c0 + j]!;
    }
  }
  return T;
}

/** writes the transpose of T (cols×rows) into M's rows×cols block at (r0, c0) */
function setBlockT(M: Float64Array, ld: number, r0: number, c0: number, T: Float64Array, rows: number, cols: number): void {
  for (let i0 = 0; i0 < rows; i0 += 32) {
    for (let j0 = 0; j0 < cols; j0 += 32) {
      const i1 = Math.min(rows, i0 + 32);
      const j1 = Math.min(cols, j0 + 32);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) M[(r0 + i) * ld + c0 + j] = T[j * rows + i]!;
    }
  }
}

/** factors the n×n block of M at (o, o) in place; trailing updates of earlier columns are already applied */
async function cholRec(M: Float64Array, ld: number, o: number, n: number, total: number): Promise<void> {
  if (n <= CHOL_BASE) return cholBase(M, ld, o, n, total);
  const n1 = Math.floor(n / 64) * 32;
  const n2 = n - n1;
  await cholRec(M, ld, o, n1, total);
  // L21ᵀ = L11⁻¹·A21ᵀ
  const L21t = await solveLowerInPlace(M, n1, getBlockT(M, ld, o + n1, o, n2, n1), n2, ld, o);
  setBlockT(M, ld, o + n1, o, L21t, n2, n1);
  // Schur complement A22 − L21·L21ᵀ, lower triangle only
  const P = await matmul(L21t, L21t, n2, n1, n2, { transA: true });
  for (let i = 0; i < n2; i++) {
    const row = (o + n1 + i) * ld + o + n1;
    for (let j = 0; j <= i; j++) M[row + j] -= P[i * n2 + j]!;
  }
  await cholRec(M, ld, o + n1, n2, total);
}

/**
 * Lower Cholesky factor L (n×n, zeros above the diagonal) of a symmetric positive-definite A; only A's
 * lower triangle is read. Throws NotPositiveDefiniteError naming the failing pivot. A is not modified.
 */
export async function cholesky(A: Float64Array, n: number): Promise<Float64Array> {
  if (A.length !== n * n) throw new Error(`cholesky: A has ${A.length} elements, expected n² = ${n}²`);
  const L = A.slice();
  await cholRec(L, n, 0, n, n);
  for (let i = 0; i < n; i++) L.fill(0, i * n + i + 1, (i + 1) * n);
  return L;
}

/** A⁻¹ = L⁻ᵀ·L⁻¹ from the lower Cholesky factor L of A (torch.cholesky_inverse), exactly symmetric. */
export async function choleskyInverse(L: Float64Array, n: number): Promise<Float64Array> {
  const Linv = await invertLower(L, n);
  return symmetrize(await matmul(Linv, Linv, n, n, n, { transA: true }), n);
}

/** X with A·X = B from the lower Cholesky factor L of A; B n×nrhs is not modified. */
export async function choleskySolve(L: Float64Array, n: number, B: Float64Array, nrhs: number): Promise<Float64Array> {
  if (B.length !== n * nrhs) throw new Error(`choleskySolve: B has ${B.length} elements, expected n·nrhs = ${n}·${nrhs}`);
  const Y = await solveLowerInPlace(L, n, B.slice(), nrhs);
  return solveUpperInPlace(transpose(L, n, n), n, Y, nrhs);
}

/**
 * Upper Cholesky factor U of H⁻¹ (H⁻¹ = Uᵀ·U, U upper with positive diagonal): the `Hinv` of the
 * SparseGPT/GPTQ reference code, `torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)),
 * upper=True)`. The factor is unique, so this computes the same matrix without forming H⁻¹:
 * with P the reversal permutation, P·H·P = Lr·Lrᵀ gives H = R·Rᵀ with R = P·Lr·P upper, so
 * H⁻¹ = R⁻ᵀ·R⁻¹ and U = R⁻¹ = P·Lr⁻¹·P. One Cholesky and one triangular inverse instead of two
 * Choleskys, an inverse and a GEMM; it also avoids squaring H's condition number in H⁻¹.
 * A failing pivot is reported in H's indexing: the trailing block H[p:, p:] is not positive definite.
 */
export async function hessianInverseUpperCholesky(H: Float64Array, n: number): Promise<Float64Array> {
  if (H.length !== n * n) throw new Error(`hessianInverseUpperCholesky: H has ${H.length} elements, expected n² = ${n}²`);
  let Lr: Float64Array;
  try {
    Lr = await cholesky(reverseBoth(H, n), n);
  } catch (e) {
    if (e instanceof NotPositiveDefiniteError) throw new NotPositiveDefiniteError(n - 1 - e.pivot, e.value, n);
    throw e;
  }
  return reverseBoth(await invertLower(Lr, n), n);
}

/** Adds fraction·mean(diag(H)) to H's diagonal in place (the reference `percdamp`); returns the amount added. */
export function dampen(H: Float64Array, n: number, fraction: number): number {
  if (H.length !== n * n) throw new Error(`dampen: H has ${H.length} elements, expected n² = ${n}²`);
  let trace = 0;
  for (let i = 0; i < n; i++) trace += H[i * n + i]!;
  const damp = (fraction * trace) / n;
  for (let i = 0; i < n; i++) H[i * n + i] += damp;
  return damp;
}

/**
 * Dead input channels (diag(H) == 0: the input was always zero) get H[i,i] = 1 in place, as in the
 * reference code (`H[dead, dead] = 1`), so H stays invertible; returns their indices. The caller zeroes
 * those weight columns (`W[:, dead] = 0`, see zeroColumns). Call before dampen, as the reference does.
 */
export function fixDeadColumns(H: Float64Array, n: number): number[] {
  const dead: number[] = [];
  for (let i = 0; i < n; i++) {
    if (H[i * n + i] === 0) {
      H[i * n + i] = 1;
      dead.push(i);
    }
  }
  return dead;
}

/** W[:, cols] = 0 for W rows×width row-major, in place. */
export function zeroColumns(W: Float32Array | Float64Array, rows: number, width: number, cols: readonly number[]): void {
  for (let r = 0; r < rows; r++) for (const c of cols) W[r * width + c] = 0;
}
