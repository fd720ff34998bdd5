import { describe, expect, it } from 'vitest';
import { kronecker } from '../../src/decompose/kronecker.js';
import { svdPass } from '../../src/decompose/svd.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { seededRandom } from '../../src/util/random.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { allClose } from '../helpers.js';
import { singleGemm } from '../quantize/models.js';
import { kronSum, random } from './kronecker-fixtures.js';

/** GPT-2's linears are Gemm with a bias: factorized forms keep α and β·C after the factors. */

const K = 48;
const N = 36;
const ctx = { seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' };

async function run(model: Model): Promise<Float32Array> {
  const r = seededRandom(5);
  const x = new ort.Tensor('float32', Float32Array.from({ length: 7 * K }, () => r() * 2 - 1), [7, K]);
  return (await (await sessionFromModel(model, { threads: 1 })).run({ x })).y!.data as Float32Array;
}

/** out × in, exactly rank 3 */
function lowRank(): Float64Array {
  const U = random(N * 3, 1);
  const V = random(3 * K, 2);
  return Float64Array.from({ length: N * K }, (_, i) => {
    const [r, c] = [Math.floor(i / K), i % K];
    return U[r * 3]! * V[c]! + U[r * 3 + 1]! * V[K + c]! + U[r * 3 + 2]! * V[2 * K + c]!;
  });
}

const forms: [string, Omit<Parameters<typeof singleGemm>[2], 'weight'>][] = [
  ['transB, bias [n]', { transB: true, biasDims: [N] }],
  ['W [k, n], α 0.5, β 2, bias [1, n]', { transB: false, alpha: 0.5, beta: 2, biasDims: [1, N] }],
];

describe('factorizing Gemm layers', () => {
  for (const [label, form] of forms) {
    it(`SVD of an exactly rank-3 Gemm (${label}) runs in ORT with the Gemm's outputs`, async () => {
      const original = singleGemm(K, N, { ...form, weight: lowRank() });
      const model = singleGemm(K, N, { ...form, weight: lowRank() });
      const result = await svdPass.apply(model, svdPass.params.parse({ rank: 3 }), { ...ctx, layers: linears(model) });
      expect(result.layers).toHaveLength(1);
      expect(model.graph.node!.map((n) => n.op_type)).not.toContain('Gemm');
      const c = allClose(await run(model), await run(original), 1e-5, 1e-5);
      expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5);
    });

    it(`Kronecker of an exact A⊗B Gemm (${label}) runs in ORT with the Gemm's outputs`, async () => {
      const W = kronSum({ m1: 6, n1: 8, m2: 6, n2: 6 }, 1, 3);
      const original = singleGemm(K, N, { ...form, weight: W });
      const model = singleGemm(K, N, { ...form, weight: W });
      const result = await kronecker.apply(model, kronecker.params.parse({ m1: 6, n1: 8, terms: 1 }), { ...ctx, layers: linears(model) });
      expect(result.layers).toHaveLength(1);
      expect(model.graph.node!.map((n) => n.op_type)).not.toContain('Gemm');
      const c = allClose(await run(model), await run(original), 1e-5, 1e-5);
      expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5);
    });
  }
});
