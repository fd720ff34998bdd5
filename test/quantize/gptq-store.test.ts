import { describe, expect, it } from 'vitest';
import type { InputStats } from '../../src/calibrate/stats.js';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { prepareHessian } from '../../src/obs/hessian.js';
import { gptqQuantize } from '../../src/quantize/gptq.js';
import { dequantizeMatrix, gridParams, quantizeMatrix } from '../../src/quantize/grid.js';
import type { WeightQuantParams } from '../../src/quantize/params.js';
import { emitQuantized } from '../../src/quantize/rtn.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { seededRandom } from '../../src/util/random.js';
import { allClose } from '../helpers.js';
import { gramRef, outputErrorRef } from '../reference/matmul.js';
import { singleMatMul } from './models.js';

/** GPTQ with act_order and static groups: the input order changes, the groups' grids do not. */

const K = 172;
const N = 24;
const SAMPLES = 400;

/** Activations with a few loud channels, so act_order's order differs from the natural one. */
function activations(): { X: Float32Array; stats: InputStats } {
  const r = seededRandom(3);
  const X = Float32Array.from({ length: SAMPLES * K }, (_, i) => (r() * 2 - 1) * (1 + ((i % K) % 11 === 0 ? 5 * r() : 0)));
  return { X, stats: { tensor: 'x', dim: K, rows: SAMPLES, xtx: gramRef(X, SAMPLES, K) } };
}

const outputError = (W: Float32Array, Wq: Float32Array, X: Float32Array) => outputErrorRef(W, Wq, X, SAMPLES, N, K);

describe('GPTQ act_order with static groups', () => {
  it('K = 172, 4-bit group 32, MSE clipping: the static grids, stored as MatMulNBits (no g_idx), ORT equal to the dequantized weights, error below RTN', async () => {
    const { X, stats } = activations();
    const model = singleMatMul(K, N);
    const [layer] = linears(model);
    const W = readWeight(model, layer!);
    const W0 = W.slice();
    const prepared = await prepareHessian(stats, W, N, { dampening: 0.01, actOrder: true, pass: 't', layer: 'proj' });
    expect(Array.from(prepared.perm!)).not.toEqual(Array.from({ length: K }, (_, i) => i));
    const spec = { bits: 4, granularity: { kind: 'group', size: 32 }, symmetric: false, mseClip: true, clipWeights: Float32Array.from({ length: K }, (_, j) => stats.xtx![j * K + j]!) } as const;
    const { m } = await gptqQuantize(W, N, K, prepared.Hinv, prepared.perm, { ...spec, blockSize: 32 });
    // the grids are W's before any update, in natural order: what MatMulNBits' per-block scales hold
    const fixed = gridParams(W0, N, K, spec);
    expect(m.scales).toEqual(fixed.scales);
    expect(m.zeros).toEqual(fixed.zeros);
    const Wq = dequantizeMatrix(m);
    expect(outputError(W0, Wq, X)).toBeLessThan(0.8 * outputError(W0, dequantizeMatrix(quantizeMatrix(W0, N, K, spec)), X));

    const params: WeightQuantParams = { bits: 4, granularity: 'group', group_size: 32, symmetric: false, format: 'matmulnbits', accuracy_level: 0 };
    const reference = singleMatMul(K, N);
    writeWeight(reference, linears(reference)[0]!, Wq);
    emitQuantized(model, layer!, m, params);
    const nodes = model.graph.node ?? [];
    expect(nodes.map((n) => [n.op_type, n.input!.length])).toEqual([['MatMulNBits', 4]]);
    const x = new ort.Tensor('float32', X.subarray(0, 5 * K), [5, K]);
    const run = async (mm: Model) => (await (await sessionFromModel(mm, { threads: 1 })).run({ x })).y!.data as Float32Array;
    const c = allClose(await run(model), await run(reference), 1e-5, 1e-5);
    expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5);
  });
});
