import type * as tfjs from '@tensorflow/tfjs';
import type { Tf } from '../../tf.js';
import { customGrad, type SaveFunc } from '../custom-grad.js';
import { narrowOutputProduct } from './narrow-output.js';
import { outputArray, valuesNow } from './wasm-arrays.js';

/**
 * Batched products whose inner dimension is a head size: attention's Q·Kᵀ and, in its backward,
 * ∂O·Vᵀ. The wasm backend runs every batched product in a scalar loop (XNNPACK only takes a single
 * 2-D product), and with an inner dimension of 8 (stories260K) that loop took ≈ 7.9 ms of CPU for
 * [32,128,8]·[32,8,128]; a JavaScript loop with the inner sum written out took ≈ 5.5 ms, the
 * copies out of and into the wasm heap included. Sums run in float64 and are rounded once.
 */

/** inner dimensions up to this take the JavaScript loop */
export const MAX_SMALL_INNER = 16;

/** C[b] = A[b]·B[b] (B [K, N]) or A[b]·B[b]ᵀ (B [N, K]); A [M, K]; row-major, batch outermost */
type Kernel = (A: Float32Array, B: Float32Array, C: Float32Array, batch: number, M: number, N: number) => void;

const kernels = new Map<string, Kernel>();

/** The loop for inner size K with its K products written out, so that V8 keeps the row of A in registers. */
function kernel(K: number, transposeB: boolean): Kernel {
  const key = `${K}${transposeB ? 'T' : 'n'}`;
  let k = kernels.get(key);
  if (!k) {
    const terms = Array.from({ length: K }, (_, p) => (transposeB ? `a${p} * B[bj + ${p}]` : `a${p} * B[bo + ${p} * N + j]`)).join(' + ');
    const loads = Array.from({ length: K }, (_, p) => `const a${p} = A[ai + ${p}];`).join(' ');
    const inner = transposeB ? `for (let j = 0, bj = bo; j < N; j++, bj += ${K}) C[c++] = ${terms};` : `for (let j = 0; j < N; j++) C[c++] = ${terms};`;
    const body = `let c = 0;
      for (let b = 0; b < batch; b++) {
        const ao = b * M * ${K}, bo = b * N * ${K};
        for (let i = 0; i < M; i++) { const ai = ao + i * ${K}; ${loads} ${inner} }
      }`;
    k = new Function('A', 'B', 'C', 'batch', 'M', 'N', body) as Kernel;
    kernels.set(key, k);
  }
  return k;
}

/** a·b (or a·bᵀ) over equal batch dimensions when the inner dimension is small; undefined otherwise. */
export function smallInnerProduct(tf: Tf, a: tfjs.Tensor, b: tfjs.Tensor, transposeB: boolean): tfjs.Tensor | undefined {
  const r = a.rank;
  const K = a.shape[r - 1]!;
  if (r < 3 || b.rank !== r || K > MAX_SMALL_INNER || a.dtype !== 'float32' || b.dtype !== 'float32') return undefined;
  if (!a.shape.slice(0, -2).every((d, i) => d === b.shape[i])) return undefined;
  if ((transposeB ? b.shape[r - 1] : b.shape[r - 2]) !== K) return undefined;
  const M = a.shape[r - 2]!;
  const N = transposeB ? b.shape[r - 2]! : b.shape[r - 1]!;
  const batch = a.shape.slice(0, -2).reduce((p, d) => p * d, 1);
  const C = outputArray(tf, batch * M * N);
  kernel(K, transposeB)(valuesNow(tf, a), valuesNow(tf, b), C, batch, M, N);
  return tf.tensor(C, [...a.shape.slice(0, -1), N], 'float32');
}

function product(tf: Tf, a: tfjs.Tensor, b: tfjs.Tensor, transposeA: boolean, transposeB: boolean): tfjs.Tensor {
  return (!transposeA && smallInnerProduct(tf, a, b, transposeB)) || narrowOutputProduct(tf, a, b, transposeA, transposeB) || tf.matMul(a, b, transposeA, transposeB);
}

/**
 * a·b over equal batch dimensions (rank ≥ 3), differentiable: ∂a = ∂y·bᵀ, ∂b = aᵀ·∂y, the
 * products tfjs' own BatchMatMul gradient takes; each one whose inner dimension is small, or whose
 * output is narrow (narrow-output.ts), runs in a JavaScript loop.
 */
export function batchedMatMul(tf: Tf, a: tfjs.Tensor, b: tfjs.Tensor): tfjs.Tensor {
  return customGrad(tf, (x, y, save) => {
    (save as unknown as SaveFunc)([x!, y!]);
    return {
      value: product(tf, x!, y!, false, false),
      gradFunc: (dy, saved) => [product(tf, dy, saved[1]!, false, true), product(tf, saved[0]!, dy, true, false)],
    };
  })(a, b);
}
