/** Float64 plain-loop references for src/linalg/gemm.ts and src/linalg/gram.ts. */

/** op(A)·op(B) in float64, op(A) m×k, op(B) k×n, row-major, one dot product per output element */
export function matmulRef(A: ArrayLike<number>, B: ArrayLike<number>, m: number, k: number, n: number, transA = false, transB = false): Float64Array {
  const C = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += (transA ? A[p * m + i]! : A[i * k + p]!) * (transB ? B[j * k + p]! : B[p * n + j]!);
      C[i * n + j] = s;
    }
  }
  return C;
}

/** XᵀX (dim×dim) of X [rows, dim] in float64 */
export function gramRef(X: ArrayLike<number>, rows: number, dim: number): Float64Array {
  const H = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) {
    for (let j = 0; j < dim; j++) {
      let s = 0;
      for (let r = 0; r < rows; r++) s += X[r * dim + i]! * X[r * dim + j]!;
      H[i * dim + j] = s;
    }
  }
  return H;
}

/** ‖X·(W − Ŵ)ᵀ‖² in float64: the output error of Ŵ on the rows of X [n, cols], W and Ŵ [rows, cols] */
export function outputErrorRef(W: ArrayLike<number>, Wq: ArrayLike<number>, X: ArrayLike<number>, n: number, rows: number, cols: number): number {
  let e = 0;
  for (let s = 0; s < n; s++) {
    for (let o = 0; o < rows; o++) {
      let d = 0;
      for (let k = 0; k < cols; k++) d += (W[o * cols + k]! - Wq[o * cols + k]!) * X[s * cols + k]!;
      e += d * d;
    }
  }
  return e;
}

/** Σ x² and max |x| per channel of X [rows, dim] */
export function channelStatsRef(X: ArrayLike<number>, rows: number, dim: number): { sumSq: Float64Array; absMax: Float64Array } {
  const sumSq = new Float64Array(dim);
  const absMax = new Float64Array(dim);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < dim; j++) {
      const x = X[r * dim + j]!;
      sumSq[j] += x * x;
      absMax[j] = Math.max(absMax[j]!, Math.abs(x));
    }
  }
  return { sumSq, absMax };
}
