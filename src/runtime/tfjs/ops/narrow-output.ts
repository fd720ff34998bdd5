import type * as tfjs from '@tensorflow/tfjs';
import type { Tf } from '../../tf.js';
import { outputArray, valuesNow } from './wasm-arrays.js';

/**
 * Batched products with a long inner dimension and a narrow output (N ≤ 16 columns, a head size):
 * attention's P·V and, in its backward, Pᵀ·∂O and ∂S·K ([32,128,128] with [32,128,8] for stories260K). The
 * wasm backend runs them in its scalar BatchMatMul loop, ≈ 3.5–4 ms of CPU each; here each output
 * row keeps its N sums in registers (the loop generated for N), summing in float64 and rounding
 * once, and a row of the left factor stops at its last non-zero entry: a causal P is zero above
 * the diagonal, which halves the work. Skipping exact zeros changes no sum of finite products.
 */

/** output columns up to this take these loops */
export const MAX_NARROW_OUTPUT = 16;

/** A·B: A [batch, M, K], B [batch, K, N] (or A·Bᵀ, B [batch, N, K]) → C [batch, M, N] */
type Product = (A: Float32Array, B: Float32Array, C: Float32Array, batch: number, M: number, K: number) => void;
/** Aᵀ·G: A [batch, M, K], G [batch, M, N] → C [batch, K, N], summed in acc (K·N float64) */
type TransposedProduct = (A: Float32Array, G: Float32Array, C: Float32Array, batch: number, M: number, K: number, acc: Float64Array) => void;

const products = new Map<string, Product>();
const transposedProducts = new Map<number, TransposedProduct>();

/** the index one past row `ai`'s last non-zero entry among K */
const rowEnd = (K: string) => `let end = ${K}; while (end > 0 && A[ai + end - 1] === 0) end--;`;
const columns = (N: number, f: (j: number) => string, sep = ' ') => Array.from({ length: N }, (_, j) => f(j)).join(sep);

function product(N: number, transposeB: boolean): Product {
  const key = `${N}${transposeB ? 'T' : 'n'}`;
  let k = products.get(key);
  if (!k) {
    // B's column j at inner index p: bp + j (B [K, N]), or row j's start + p (B [N, K])
    const term = transposeB ? (j: number) => `s${j} += a * B[b${j} + p];` : (j: number) => `s${j} += a * B[bp + ${j}];`;
    const body = `let c = 0;
      for (let b = 0; b < batch; b++) {
        const ao = b * M * K, bo = b * K * ${N};
        ${transposeB ? columns(N, (j) => `const b${j} = bo + ${j} * K;`) : ''}
        for (let i = 0; i < M; i++) {
          const ai = ao + i * K; ${rowEnd('K')}
          ${columns(N, (j) => `let s${j} = 0;`)}
          for (let p = 0, bp = bo; p < end; p++, bp += ${N}) { const a = A[ai + p]; ${columns(N, term)} }
          ${columns(N, (j) => `C[c++] = s${j};`)}
        }
      }`;
    k = new Function('A', 'B', 'C', 'batch', 'M', 'K', body) as Product;
    products.set(key, k);
  }
  return k;
}

function transposedProduct(N: number): TransposedProduct {
  let k = transposedProducts.get(N);
  if (!k) {
    const body = `for (let b = 0; b < batch; b++) {
        const ao = b * M * K, go = b * M * ${N}, co = b * K * ${N};
        acc.fill(0);
        for (let i = 0; i < M; i++) {
          const ai = ao + i * K, gi = go + i * ${N}; ${rowEnd('K')}
          ${columns(N, (j) => `const g${j} = G[gi + ${j}];`)}
          for (let p = 0, q = 0; p < end; p++, q += ${N}) { const a = A[ai + p]; ${columns(N, (j) => `acc[q + ${j}] += a * g${j};`)} }
        }
        for (let q = 0; q < K * ${N}; q++) C[co + q] = acc[q];
      }`;
    k = new Function('A', 'G', 'C', 'batch', 'M', 'K', 'acc', body) as TransposedProduct;
    transposedProducts.set(N, k);
  }
  return k;
}

/**
 * op(a)·op(b) over equal batch dimensions (op(a) = aᵀ with transposeA, op(b) = bᵀ with transposeB,
 * not both) when the output has at most MAX_NARROW_OUTPUT columns and the inner dimension is longer
 * than that; undefined otherwise (the caller's kernel then runs).
 */
export function narrowOutputProduct(tf: Tf, a: tfjs.Tensor, b: tfjs.Tensor, transposeA: boolean, transposeB: boolean): tfjs.Tensor | undefined {
  const r = a.rank;
  if (r < 3 || b.rank !== r || (transposeA && transposeB) || a.dtype !== 'float32' || b.dtype !== 'float32') return undefined;
  if (!a.shape.slice(0, -2).every((d, i) => d === b.shape[i])) return undefined;
  const [M, K] = [a.shape[r - 2]!, a.shape[r - 1]!];
  const [bInner, N] = transposeB ? [b.shape[r - 1]!, b.shape[r - 2]!] : [b.shape[r - 2]!, b.shape[r - 1]!];
  const inner = transposeA ? M : K;
  if (N > MAX_NARROW_OUTPUT || inner <= MAX_NARROW_OUTPUT || bInner !== inner) return undefined;
  const batch = a.shape.slice(0, -2).reduce((p, d) => p * d, 1);
  const rows = transposeA ? K : M;
  const C = outputArray(tf, batch * rows * N);
  if (transposeA) {
    if (accumulator.length < K * N) accumulator = new Float64Array(K * N);
    transposedProduct(N)(valuesNow(tf, a), valuesNow(tf, b), C, batch, M, K, accumulator.subarray(0, K * N));
  } else {
    product(N, transposeB)(valuesNow(tf, a), valuesNow(tf, b), C, batch, M, K);
  }
  return tf.tensor(C, [...a.shape.slice(0, -2), rows, N], 'float32');
}
let accumulator = new Float64Array(0);
