/** Block copies and transposes of row-major float64 matrices, used by the recursive kernels. */

/** rows×cols block of M (leading dimension ld) starting at (r0, c0), as a new contiguous array */
export function getBlock(M: Float64Array, ld: number, r0: number, c0: number, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) out.set(M.subarray((r0 + i) * ld + c0, (r0 + i) * ld + c0 + cols), i * cols);
  return out;
}

/** writes the contiguous rows×cols block B into M at (r0, c0) */
export function setBlock(M: Float64Array, ld: number, r0: number, c0: number, B: Float64Array, rows: number, cols: number): void {
  for (let i = 0; i < rows; i++) M.set(B.subarray(i * cols, (i + 1) * cols), (r0 + i) * ld + c0);
}

/** Aᵀ (cols×rows) of a rows×cols matrix */
export function transpose(A: Float64Array, rows: number, cols: number): Float64Array {
  const T = new Float64Array(rows * cols);
  const B = 32;
  for (let i0 = 0; i0 < rows; i0 += B) {
    for (let j0 = 0; j0 < cols; j0 += B) {
      const i1 = Math.min(rows, i0 + B);
      const j1 = Math.min(cols, j0 + B);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) T[j * rows + i] = A[i * cols + j]!;
    }
  }
  return T;
}

/** P·A·P for the reversal permutation P: reverses both the row and the column order of an n×n matrix */
export function reverseBoth(A: Float64Array, n: number): Float64Array {
  const R = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) R[i * n + j] = A[(n - 1 - i) * n + (n - 1 - j)]!;
  return R;
}

/** makes an n×n matrix exactly symmetric by averaging it with its transpose, in place */
export function symmetrize(A: Float64Array, n: number): Float64Array {
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const v = 0.5 * (A[i * n + j]! + A[j * n + i]!);
      A[i * n + j] = v;
      A[j * n + i] = v;
    }
  }
  return A;
}

export function toFloat64(A: ArrayLike<number>): Float64Array {
  return A instanceof Float64Array ? A : Float64Array.from(A);
}
