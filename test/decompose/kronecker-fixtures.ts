import type { KroneckerShape } from '../../src/decompose/kronecker-math.js';
import { makeNode } from '../../src/model/graph.js';
import { Model } from '../../src/model/model.js';
import { seededRandom } from '../../src/util/random.js';

/** Uniform values in [−0.5, 0.5), seeded. */
export function random(n: number, seed: number): Float64Array {
  const r = seededRandom(seed);
  return Float64Array.from({ length: n }, () => r() - 0.5);
}

/** Σ_r A_r ⊗ B_r of random factors by the definition, (A⊗B)[i·m2 + k, j·n2 + l] = A[i, j]·B[k, l], float64. */
export function kronSum(s: KroneckerShape, terms: number, seed: number): Float64Array {
  const { m1, n1, m2, n2 } = s;
  const W = new Float64Array(m1 * m2 * n1 * n2);
  for (let r = 0; r < terms; r++) {
    const A = random(m1 * n1, seed + 2 * r);
    const B = random(m2 * n2, seed + 2 * r + 1);
    for (let i = 0; i < m1; i++) for (let j = 0; j < n1; j++) for (let k = 0; k < m2; k++) for (let l = 0; l < n2; l++) W[(i * m2 + k) * n1 * n2 + j * n2 + l] += A[i * n1 + j]! * B[k * n2 + l]!;
  }
  return W;
}

/** y = x · W0 with W0 [n, m] a placeholder initializer, x [2, 3, n]: one linear for emitKronecker to replace. */
export function oneLinear(m: number, n: number): Model {
  const type = (dims: (number | string)[]) => ({ tensor_type: { elem_type: 1, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } });
  return new Model(
    {
      ir_version: 8,
      opset_import: [{ domain: '', version: 17 }],
      graph: {
        name: 'one-linear',
        node: [makeNode('MatMul', ['x', 'layers.0.proj.weight'], ['y'], '/layers.0/proj/MatMul')],
        initializer: [{ name: 'layers.0.proj.weight', data_type: 1, dims: [n, m], raw_data: new Uint8Array(new Float32Array(n * m).buffer) }],
        input: [{ name: 'x', type: type(['batch', 'seq', n]) }],
        output: [{ name: 'y', type: type(['batch', 'seq', m]) }],
      },
    },
    'one-linear.onnx',
  );
}

/** Σ_r A_r ⊗ B_r applied to each row of x [T, n], float64, straight from the definition (A⊗B)[i·m2 + k, j·n2 + l] = A[i, j]·B[k, l]. */
export function denseApply(s: KroneckerShape, A: Float64Array[], B: Float64Array[], x: Float32Array, T: number, perms?: { rowPerm: Int32Array; colPerm: Int32Array }): Float64Array {
  const { m1, n1, m2, n2 } = s;
  const m = m1 * m2;
  const n = n1 * n2;
  const W = new Float64Array(m * n);
  A.forEach((a, r) => {
    for (let i = 0; i < m1; i++) for (let j = 0; j < n1; j++) for (let k = 0; k < m2; k++) for (let l = 0; l < n2; l++) W[(i * m2 + k) * n + j * n2 + l] += a[i * n1 + j]! * B[r]![k * n2 + l]!;
  });
  // with permutations the factors approximate W[rowPerm, colPerm]: Ŵ[rowPerm[b], colPerm[c]] = W[b, c]
  const Wfull = new Float64Array(m * n);
  for (let b = 0; b < m; b++) for (let c = 0; c < n; c++) Wfull[(perms ? perms.rowPerm[b]! : b) * n + (perms ? perms.colPerm[c]! : c)] = W[b * n + c]!;
  const y = new Float64Array(T * m);
  for (let t = 0; t < T; t++) for (let o = 0; o < m; o++) {
    let acc = 0;
    for (let c = 0; c < n; c++) acc += Wfull[o * n + c]! * x[t * n + c]!;
    y[t * m + o] = acc;
  }
  return y;
}

/** A seeded permutation of 0 … n−1. */
export function shuffled(n: number, seed: number): Int32Array {
  const r = random(n, seed);
  return Int32Array.from(Array.from({ length: n }, (_, i) => i).sort((a, b) => r[a]! - r[b]!));
}
