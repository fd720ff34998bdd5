import { describe, expect, it } from 'vitest';
import { linears } from '../../src/model/linears.js';
import { seededRandom } from '../../src/util/random.js';
import { quantizeMatrix } from '../../src/quantize/grid.js';
import { w8a8 } from '../../src/quantize/w8a8.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { readWeight } from '../../src/model/linear-weights.js';
import { allClose } from '../helpers.js';
import { singleMatMul } from './models.js';

/** ONNX Round: halves go to the even neighbour. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

describe('quantize.w8a8 (per-token dynamic activations, per-channel weights)', () => {
  it('ORT output equals a float64 reference of per-token int8 × per-channel int8', async () => {
    const K = 64;
    const N = 48;
    const rows = 7;
    const model = singleMatMul(K, N);
    const [layer] = linears(model);
    const W = readWeight(model, layer!);
    await w8a8.apply(model, { epsilon: 1e-8 }, { layers: [layer!], seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' });
    const ops = model.graph.node!.map((n) => n.op_type);
    expect(ops).toContain('MatMulInteger');
    expect(ops).not.toContain('MatMul');

    const r = seededRandom(5);
    const x = Float32Array.from({ length: rows * K }, (_, i) => (r() - 0.5) * (i % K === 3 ? 20 : 2)); // an outlier channel
    x.fill(0, 2 * K, 3 * K); // an all-zero token
    const s = await sessionFromModel(model, { threads: 1 });
    const got = (await s.run({ x: new ort.Tensor('float32', x, [rows, K]) })).y!.data as Float32Array;

    const wq = quantizeMatrix(W, N, K, { bits: 8, granularity: { kind: 'channel' }, symmetric: true });
    const want = new Float64Array(rows * N);
    for (let t = 0; t < rows; t++) {
      let amax = 0;
      for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(x[t * K + k]!));
      const sx = Math.fround(Math.fround(Math.max(amax, 1e-8)) / 127);
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) {
          const xq = Math.max(-127, Math.min(127, roundHalfEven(Math.fround(x[t * K + k]! / sx))));
          acc += xq * (wq.q[n * K + k]! - 128);
        }
        want[t * N + n] = acc * sx * wq.scales[n]!;
      }
    }
    const c = allClose(got, want, 1e-5, 1e-6);
    expect(c.ok, c.worst).toBe(true); // measured: float32 rounding of the two rescaling Muls only
    expect(Array.from(got.subarray(2 * N, 3 * N)).every((v) => v === 0)).toBe(true);
  });
});
