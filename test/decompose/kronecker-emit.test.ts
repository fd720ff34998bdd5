import { describe, expect, it } from 'vitest';
import { emitKronecker } from '../../src/decompose/kronecker.js';
import { kroneckerOrder, type KroneckerShape } from '../../src/decompose/kronecker-math.js';
import { linears } from '../../src/model/linears.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { allClose } from '../helpers.js';
import { denseApply, oneLinear, random, shuffled } from './kronecker-fixtures.js';

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
