/** Seeded test matrices in float64: Gaussian entries, random orthonormal columns, SPD and known-spectrum matrices. */
import { matmulRef } from './matmul.js';

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
}

export function gaussianMatrix(count: number, seed: number): Float64Array {
  const u = rng(seed);
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

/** m×k (k ≤ m) with orthonormal columns: modified Gram–Schmidt, applied twice, on a Gaussian matrix */
export function orthonormalColumns(m: number, k: number, seed: number): Float64Array {
  const Q = gaussianMatrix(m * k, seed);
  for (let j = 0; j < k; j++) {
    for (let pass = 0; pass < 2; pass++) {
      for (let p = 0; p < j; p++) {
        let dot = 0;
        for (let i = 0; i < m; i++) dot += Q[i * k + p]! * Q[i * k + j]!;
        for (let i = 0; i < m; i++) Q[i * k + j] -= dot * Q[i * k + p]!;
      }
    }
    let norm = 0;
    for (let i = 0; i < m; i++) norm += Q[i * k + j]! ** 2;
    norm = Math.sqrt(norm);
    for (let i = 0; i < m; i++) Q[i * k + j] /= norm;
  }
  return Q;
}

/** A = U·diag(sigma)·Vᵀ, m×n, with random orthonormal U (m×r) and V (n×r), r = sigma.length */
export function withSingularValues(m: number, n: number, sigma: number[], seed: number): Float64Array {
  const r = sigma.length;
  const U = orthonormalColumns(m, r, seed);
  const V = orthonormalColumns(n, r, seed + 1);
  for (let i = 0; i < m; i++) for (let j = 0; j < r; j++) U[i * r + j] *= sigma[j]!;
  return matmulRef(U, V, m, r, n, false, true);
}

/** symmetric positive definite n×n: XᵀX/rows + shift·I for Gaussian X (rows×n) */
export function spdMatrix(n: number, seed: number, rows = 2 * n, shift = 0.1): Float64Array {
  const X = gaussianMatrix(rows * n, seed);
  const H = matmulRef(X, X, n, rows, n, true, false);
  for (let i = 0; i < n * n; i++) H[i] /= rows;
  for (let i = 0; i < n; i++) H[i * n + i] += shift;
  return H;
}

export function identityResidual(P: ArrayLike<number>, n: number): number {
  let worst = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) worst = Math.max(worst, Math.abs(P[i * n + j]! - (i === j ? 1 : 0)));
  return worst;
}
