import { type FloatArray, type KernelGraph, dtypeOf, runKernel } from './backend.js';

/**
 * General matrix product C = op(A)·op(B) over row-major typed arrays, op(A) m×k, op(B) k×n. Working
 * precision is the inputs' dtype: float32 runs MLAS SGEMM, float64 runs MLAS DGEMM (genuine double).
 * Problems under SMALL_FLOPS multiply-adds run in a JS loop (ORT's per-call overhead dominates there);
 * the JS loop accumulates in double and rounds once to the output dtype.
 */

export interface GemmOptions {
  /** A is stored k×m and used transposed */
  transA?: boolean;
  /** B is stored n×k and used transposed */
  transB?: boolean;
}

/** m·k·n below which the product runs in JS (32³) */
export const SMALL_FLOPS = 32 * 32 * 32;

function gemmGraph(dtype: 'float32' | 'float64', transA: boolean, transB: boolean): () => KernelGraph {
  return () => ({
    inputs: [
      { name: 'A', dtype, dims: ['a0', 'a1'] },
      { name: 'B', dtype, dims: ['b0', 'b1'] },
    ],
    outputs: [{ name: 'Y', dtype, dims: ['m', 'n'] }],
    nodes: [{ op: 'Gemm', inputs: ['A', 'B'], outputs: ['Y'], attrs: { transA: transA ? 1 : 0, transB: transB ? 1 : 0 } }],
  });
}

function checkShapes(A: FloatArray, B: FloatArray, m: number, k: number, n: number): void {
  if (dtypeOf(A) !== dtypeOf(B)) throw new Error(`matmul: A is ${dtypeOf(A)} but B is ${dtypeOf(B)}`);
  for (const [name, v] of [['m', m], ['k', k], ['n', n]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`matmul: ${name} must be a non-negative integer, got ${v}`);
  }
  if (A.length !== m * k) throw new Error(`matmul: A has ${A.length} elements, expected m·k = ${m}·${k}`);
  if (B.length !== k * n) throw new Error(`matmul: B has ${B.length} elements, expected k·n = ${k}·${n}`);
}

/** The plain-loop product (double accumulation), used for small problems. */
export function matmulJs<T extends FloatArray>(A: T, B: T, m: number, k: number, n: number, opts: GemmOptions = {}): T {
  const C = (A instanceof Float64Array ? new Float64Array(m * n) : new Float32Array(m * n)) as T;
  const acc = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    acc.fill(0);
    for (let p = 0; p < k; p++) {
      const a = opts.transA ? A[p * m + i]! : A[i * k + p]!;
      if (a === 0) continue;
      if (opts.transB) for (let j = 0; j < n; j++) acc[j] += a * B[j * k + p]!;
      else {
        const off = p * n;
        for (let j = 0; j < n; j++) acc[j] += a * B[off + j]!;
      }
    }
    C.set(acc, i * n);
  }
  return C;
}

/** C = op(A)·op(B), m×n row-major, same dtype as A and B. */
export async function matmul<T extends FloatArray>(A: T, B: T, m: number, k: number, n: number, opts: GemmOptions = {}): Promise<T> {
  checkShapes(A, B, m, k, n);
  if (m === 0 || n === 0 || k === 0 || m * k * n < SMALL_FLOPS) return matmulJs(A, B, m, k, n, opts);
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const dtype = dtypeOf(A);
  const key = `gemm_${dtype}_${transA ? 't' : 'n'}${transB ? 't' : 'n'}`;
  const C = await runKernel(key, gemmGraph(dtype, transA, transB), {
    A: { data: A, dims: transA ? [k, m] : [m, k] },
    B: { data: B, dims: transB ? [n, k] : [k, n] },
  });
  return C as T;
}

/** C += alpha·op(A)·op(B) in place (C is m×n); returns C. */
export async function gemmAccumulate<T extends FloatArray>(C: T, A: T, B: T, m: number, k: number, n: number, opts: GemmOptions & { alpha?: number } = {}): Promise<T> {
  if (C.length !== m * n) throw new Error(`gemmAccumulate: C has ${C.length} elements, expected m·n = ${m}·${n}`);
  const P = await matmul(A, B, m, k, n, opts);
  const alpha = opts.alpha ?? 1;
  if (alpha === 1) for (let i = 0; i < C.length; i++) C[i] += P[i]!;
  else for (let i = 0; i < C.length; i++) C[i] += alpha * P[i]!;
  return C;
}
