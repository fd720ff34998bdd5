import { describe, expect, it } from 'vitest';
import { emitKronecker } from '../../src/decompose/kronecker.js';
import { kroneckerOrder, type KroneckerShape } from '../../src/decompose/kronecker-math.js';
import { makeNode } from '../../src/model/graph.js';
import { linears } from '../../src/model/linears.js';
import { Model } from '../../src/model/model.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { allClose } from '../helpers.js';
import { random } from './kronecker-fixtures.js';

/** y = x · W0 with W0 [n, m] a placeholder initializer, x [2, 3, n]: one linear for emitKronecker to replace. */
function oneLinear(m: number, n: number): Model {
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
function denseApply(s: KroneckerShape, A: Float64Array[], B: Float64Array[], x: Float32Array, T: number, perms?: { rowPerm: Int32Array; colPerm: Int32Array }): Float64Array {
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

function shuffled(n: number, seed: number): Int32Array {
  const r = random(n, seed);
  return Int32Array.from(Array.from({ length: n }, (_, i) => i).sort((a, b) => r[a]! - r[b]!));
}

describe('Kronecker emission', () => {
  const cases: { shape: KroneckerShape; terms: number; permute?: boolean }[] = [
    { shape: { m1: 4, n1: 8, m2: 6, n2: 3 }, terms: 3 }, // a-first, both transposes
    { shape: { m1: 6, n1: 3, m2: 4, n2: 8 }, terms: 2 }, // b-first, both transposes
    { shape: { m1: 1, n1: 12, m2: 10, n2: 1 }, terms: 4 }, // rank 4, a-first: two MatMuls
    { shape: { m1: 10, n1: 1, m2: 1, n2: 12 }, terms: 4 }, // rank 4, b-first
    { shape: { m1: 1, n1: 6, m2: 10, n2: 2 }, terms: 3 }, // A a row: the input transpose only
    { shape: { m1: 5, n1: 4, m2: 2, n2: 3 }, terms: 1, permute: true }, // Gathers in and out
    { shape: { m1: 1, n1: 12, m2: 10, n2: 1 }, terms: 2, permute: true }, // rank with Gathers
  ];
  for (const { shape, terms, permute } of cases) {
    const name = `${shape.m1}×${shape.n1} ⊗ ${shape.m2}×${shape.n2}, ${terms} term(s)${permute ? ', permuted' : ''} (${kroneckerOrder(shape)})`;
    it(`ORT output equals the dense Σ A⊗B: ${name}`, async () => {
      const m = shape.m1 * shape.m2;
      const n = shape.n1 * shape.n2;
      const model = oneLinear(m, n);
      const A = Array.from({ length: terms }, (_, r) => random(shape.m1 * shape.n1, 10 + r));
      const B = Array.from({ length: terms }, (_, r) => random(shape.m2 * shape.n2, 20 + r));
      const perms = permute ? { rowPerm: shuffled(m, 3), colPerm: shuffled(n, 4) } : undefined;
      emitKronecker(model, linears(model)[0]!, { shape, A, B, sigma: new Float64Array(terms) }, perms);
      const ops = model.graph.node!.map((node) => node.op_type);
      expect(ops.filter((op) => op === 'MatMul')).toHaveLength(2);
      if (shape.m1 * shape.n2 === 1 || shape.n1 * shape.m2 === 1) expect(ops.filter((op) => op !== 'Gather')).toEqual(['MatMul', 'MatMul']);
      const x = Float32Array.from(random(6 * n, 7));
      const session = await sessionFromModel(model, { threads: 1 });
      const y = (await session.run({ x: new ort.Tensor('float32', x, [2, 3, n]) })).y!;
      expect(y.dims).toEqual([2, 3, m]);
      const c = allClose(y.data as Float32Array, denseApply(shape, A, B, x, 6, perms), 1e-5, 1e-6);
      expect(c.ok, c.worst).toBe(true); // float32 GEMMs against float64: measured ≤ 1e-7
      await session.release();
    });
  }
});
