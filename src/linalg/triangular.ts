import { getBlock, setBlock, transpose } from './blocks.js';
import { matmul } from './gemm.js';

/**
 * Triangular solves and inverses, float64, row-major. Recursive halving: the off-diagonal work is GEMM
 * through the fast backend (MLAS DGEMM); blocks of SOLVE_BASE / INVERT_BASE or fewer rows run in JS.
 * L is lower triangular and U upper; entries on the other side of the diagonal are ignored.
 */

/** rows below which a solve runs as substitution in JS (its JS work is n·BASE·nrhs/2) */
export const SOLVE_BASE = 48;
/** size below which a triangular inverse runs in JS (JS work n·BASE²/6; larger bases mean fewer block copies) */
export const INVERT_BASE = 128;

function split(n: number): number {
  // keep the first half a multiple of 16 so the base blocks stay aligned
  return Math.max(16, Math.floor(n / 32) * 16);
}

/** X = L⁻¹·B for L n×n lower and B n×nrhs; B is overwritten with X and returned. */
export async function solveLowerInPlace(L: Float64Array, n: number, B: Float64Array, nrhs: number, ld = n, o = 0): Promise<Float64Array> {
  if (n <= SOLVE_BASE) {
    for (let i = 0; i < n; i++) {
      const row = (o + i) * ld + o;
      const bi = i * nrhs;
      for (let j = 0; j < i; j++) {
        const l = L[row + j]!;
        if (l === 0) continue;
        const bj = j * nrhs;
        for (let c = 0; c < nrhs; c++) B[bi + c] -= l * B[bj + c]!;
      }
      const inv = 1 / L[row + i]!;
      for (let c = 0; c < nrhs; c++) B[bi + c] *= inv;
    }
    return B;
  }
  const n1 = split(n);
  const n2 = n - n1;
  const B1 = B.subarray(0, n1 * nrhs);
  const B2 = B.subarray(n1 * nrhs);
  await solveLowerInPlace(L, n1, B1, nrhs, ld, o);
  const L21 = getBlock(L, ld, o + n1, o, n2, n1);
  const P = await matmul(L21, B1, n2, n1, nrhs);
  for (let i = 0; i < P.length; i++) B2[i] -= P[i]!;
  await solveLowerInPlace(L, n2, B2, nrhs, ld, o + n1);
  return B;
}

/** X = U⁻¹·B for U n×n upper and B n×nrhs; B is overwritten with X and returned. */
export async function solveUpperInPlace(U: Float64Array, n: number, B: Float64Array, nrhs: number, ld = n, o = 0): Promise<Float64Array> {
  if (n <= SOLVE_BASE) {
    for (let i = n - 1; i >= 0; i--) {
      const row = (o + i) * ld + o;
      const bi = i * nrhs;
      for (let j = i + 1; j < n; j++) {
        const u = U[row + j]!;
        if (u === 0) continue;
        const bj = j * nrhs;
        for (let c = 0; c < nrhs; c++) B[bi + c] -= u * B[bj + c]!;
      }
      const inv = 1 / U[row + i]!;
      for (let c = 0; c < nrhs; c++) B[bi + c] *= inv;
    }
    return B;
  }
  const n1 = split(n);
  const n2 = n - n1;
  const B1 = B.subarray(0, n1 * nrhs);
  const B2 = B.subarray(n1 * nrhs);
  await solveUpperInPlace(U, n2, B2, nrhs, ld, o + n1);
  const U12 = getBlock(U, ld, o, o + n1, n1, n2);
  const P = await matmul(U12, B2, n1, n2, nrhs);
  for (let i = 0; i < P.length; i++) B1[i] -= P[i]!;
  await solveUpperInPlace(U, n1, B1, nrhs, ld, o);
  return B;
}

export interface SolveOptions {
  /** solve with the transpose of the triangle (Lᵀ·X = B, an upper solve) */
  transpose?: boolean;
}

/** X with L·X = B (or Lᵀ·X = B), L n×n lower, B n×nrhs; B is not modified. */
export async function solveLower(L: Float64Array, n: number, B: Float64Array, nrhs: number, opts: SolveOptions = {}): Promise<Float64Array> {
  check('solveLower', L, n, B, nrhs);
  return opts.transpose ? solveUpperInPlace(transpose(L, n, n), n, B.slice(), nrhs) : solveLowerInPlace(L, n, B.slice(), nrhs);
}

/** X with U·X = B (or Uᵀ·X = B), U n×n upper, B n×nrhs; B is not modified. */
export async function solveUpper(U: Float64Array, n: number, B: Float64Array, nrhs: number, opts: SolveOptions = {}): Promise<Float64Array> {
  check('solveUpper', U, n, B, nrhs);
  return opts.transpose ? solveLowerInPlace(transpose(U, n, n), n, B.slice(), nrhs) : solveUpperInPlace(U, n, B.slice(), nrhs);
}

function check(fn: string, T: Float64Array, n: number, B: Float64Array, nrhs: number): void {
  if (T.length !== n * n) throw new Error(`${fn}: triangle has ${T.length} elements, expected n² = ${n}²`);
  if (B.length !== n * nrhs) throw new Error(`${fn}: B has ${B.length} elements, expected n·nrhs = ${n}·${nrhs}`);
}

/**
 * L⁻¹ for L n×n lower (a new lower-triangular array):
 * [L11 0; L21 L22]⁻¹ = [L11⁻¹ 0; −L22⁻¹·L21·L11⁻¹  L22⁻¹].
 */
export async function invertLower(L: Float64Array, n: number): Promise<Float64Array> {
  if (L.length !== n * n) throw new Error(`invertLower: L has ${L.length} elements, expected n² = ${n}²`);
  const X = L.slice();
  for (let i = 0; i < n; i++) X.fill(0, i * n + i + 1, (i + 1) * n);
  await invertLowerInPlace(X, n, 0, n);
  return X;
}

/** replaces the lower-triangular n×n block of M at (o, o) (leading dimension ld) by its inverse */
async function invertLowerInPlace(M: Float64Array, ld: number, o: number, n: number): Promise<void> {
  if (n <= INVERT_BASE) {
    // row i of the inverse: X[i, j] = −(Σ_{j≤p<i} L[i, p]·X[p, j]) / L[i, i], accumulated along rows
    const L = getBlock(M, ld, o, o, n, n);
    const X = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      const xi = i * n;
      for (let p = 0; p < i; p++) {
        const l = L[xi + p]!;
        if (l === 0) continue;
        const xp = p * n;
        for (let j = 0; j <= p; j++) X[xi + j] -= l * X[xp + j]!;
      }
      const inv = 1 / L[xi + i]!;
      for (let j = 0; j < i; j++) X[xi + j] *= inv;
      X[xi + i] = inv;
    }
    setBlock(M, ld, o, o, X, n, n);
    return;
  }
  const n1 = split(n);
  const n2 = n - n1;
  await invertLowerInPlace(M, ld, o, n1);
  await invertLowerInPlace(M, ld, o + n1, n2);
  // L21 ← −L22⁻¹·(L21·L11⁻¹)
  const T = await matmul(getBlock(M, ld, o + n1, o, n2, n1), getBlock(M, ld, o, o, n1, n1), n2, n1, n1);
  const I21 = await matmul(getBlock(M, ld, o + n1, o + n1, n2, n2), T, n2, n2, n1);
  for (let i = 0; i < I21.length; i++) I21[i] = -I21[i]!;
  setBlock(M, ld, o + n1, o, I21, n2, n1);
}
