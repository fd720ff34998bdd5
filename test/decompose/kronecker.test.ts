import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Calibrator } from '../../src/calibrate/calibrator.js';
import { calibrationFeeds } from '../../src/calibrate/feeds.js';
import { loadDataset } from '../../src/data/load.js';
import { kronecker } from '../../src/decompose/kronecker.js';
import { kroneckerDense, nearestKronecker, permutedKronecker } from '../../src/decompose/kronecker-math.js';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { allClose } from '../helpers.js';
import { storiesLogits } from '../quantize/models.js';
import { random } from './kronecker-fixtures.js';

const ROOT = resolve(__dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');

/** A ⊗ B by its definition, (A⊗B)[i·m2 + k, j·n2 + l] = A[i, j]·B[k, l]. */
function kron(A: Float64Array, B: Float64Array, m1: number, n1: number, m2: number, n2: number): Float64Array {
  const W = new Float64Array(m1 * m2 * n1 * n2);
  for (let i = 0; i < m1; i++) for (let j = 0; j < n1; j++) for (let k = 0; k < m2; k++) for (let l = 0; l < n2; l++) W[(i * m2 + k) * n1 * n2 + j * n2 + l] = A[i * n1 + j]! * B[k * n2 + l]!;
  return W;
}

describe('nearest Kronecker factors', () => {
  const shape = { m1: 4, n1: 8, m2: 16, n2: 6 };
  it('recover an exact A ⊗ B to float64 precision', async () => {
    const W = kron(random(32, 1), random(96, 2), 4, 8, 16, 6);
    const f = await nearestKronecker(W, shape, 1);
    const c = allClose(kroneckerDense(f), W, 1e-10, 1e-12);
    expect(c.ok, c.worst).toBe(true);
    expect(f.sigma[1]! / f.sigma[0]!).toBeLessThan(1e-12);
  });
  it('recover an exact sum of two products with two terms', async () => {
    const W1 = kron(random(32, 3), random(96, 4), 4, 8, 16, 6);
    const W2 = kron(random(32, 5), random(96, 6), 4, 8, 16, 6);
    const W = W1.map((v, i) => v + W2[i]!);
    const c = allClose(kroneckerDense(await nearestKronecker(W, shape, 2)), W, 1e-10, 1e-12);
    expect(c.ok, c.worst).toBe(true);
  });
});

describe('decompose.kronecker', () => {
  it('ORT runs the Reshape–MatMul–MatMul–Reshape form as the dense Σ A⊗B', async () => {
    const model = readOnnx(MODEL);
    const reference = readOnnx(MODEL);
    const pick = (m: ReturnType<typeof readOnnx>) => linears(m).filter((l) => /layers\.[01]\.(self_attn\.q_proj|mlp\.(up|down)_proj)$/.test(l.name));
    const result = await kronecker.apply(model, kronecker.params.parse({ terms: 2 }), { layers: pick(model), seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' });
    expect(result.layers).toHaveLength(6);
    for (const l of pick(reference)) {
      const shape = { m1: l.outFeatures === 172 ? 4 : 8, n1: l.inFeatures === 172 ? 4 : 8, m2: l.outFeatures === 172 ? 43 : 8, n2: l.inFeatures === 172 ? 43 : 8 };
      writeWeight(reference, l, Float32Array.from(kroneckerDense(await nearestKronecker(readWeight(reference, l), shape, 2))));
    }
    const run = (m: ReturnType<typeof readOnnx>) => storiesLogits(m, { batch: 2, seq: 19, seed: 21 });
    const c = allClose(await run(model), await run(reference), 1e-4, 1e-4);
    expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5);
    expect(result.layers[0]!.bytes_after).toBeLessThan(result.layers[0]!.bytes_before);
  });

  it('permutation search lowers the error on real weights, and ORT runs the gathered form as the dense permuted Ŵ', async () => {
    const model = readOnnx(MODEL);
    const reference = readOnnx(MODEL);
    const pick = (m: ReturnType<typeof readOnnx>) => linears(m).filter((l) => /layers\.[0-4]\.mlp\.(up|gate)_proj$/.test(l.name));
    const result = await kronecker.apply(model, kronecker.params.parse({ terms: 2, permutation_rounds: 3, runtime: 'factored' }), { layers: pick(model), seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' });
    let with_ = 0;
    let without = 0;
    for (const l of result.layers) {
      const e = Number(l.extra!.weight_rel_error);
      const e0 = Number(l.extra!.weight_rel_error_without_permutation);
      expect(e).toBeLessThanOrEqual(e0);
      with_ += e;
      without += e0;
    }
    expect(with_).toBeLessThan(0.99 * without); // measured: see bench/RESULTS.md
    expect(model.graph.node!.some((n) => n.op_type === 'Gather' && n.name?.endsWith('kron_Gather_in'))).toBe(true);
    for (const l of pick(reference)) {
      const W = readWeight(reference, l);
      const found = await permutedKronecker(W, { m1: 4, n1: 8, m2: 43, n2: 8 }, 2, { rounds: 3, structure: true });
      const dense = kroneckerDense(found.factors);
      const approx = new Float32Array(W.length);
      for (let b = 0; b < 172; b++) for (let c = 0; c < 64; c++) approx[found.rowPerm[b]! * 64 + found.colPerm[c]!] = dense[b * 64 + c]!;
      writeWeight(reference, l, approx);
    }
    const run = (m: ReturnType<typeof readOnnx>) => storiesLogits(m, { batch: 2, seq: 19, seed: 22 });
    const c = allClose(await run(model), await run(reference), 1e-4, 1e-4);
    expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5);
  });

  it('ratio picks shapes and terms within the budget; ratio with all of terms/m1/n1 is a params error', async () => {
    const model = readOnnx(MODEL);
    const layers = linears(model).filter((l) => /layers\.0\.(self_attn\.q_proj|mlp\.down_proj)$/.test(l.name));
    const ctx = { layers, seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' };
    const result = await kronecker.apply(model, kronecker.params.parse({ ratio: 0.5 }), ctx);
    expect(result.layers).toHaveLength(2);
    for (const l of result.layers) {
      expect(l.bytes_after).toBeLessThanOrEqual(0.5 * l.bytes_before);
      expect(Number(l.extra!.params_after)).toBe(l.bytes_after / 4);
    }
    // the schema rejects it, at the ratio field, before any pass runs
    const both = kronecker.parse({ ratio: 0.5, terms: 2, m1: 8, n1: 8 });
    expect(both.success ? [] : both.error.issues.map((i) => i.path)).toEqual([['ratio']]);
  });

  it('iterative mode lowers the output error on calibration data below the weight-only fit, in sequence', async () => {
    const pick = (m: ReturnType<typeof readOnnx>) => linears(m).filter((l) => /layers\.0\.mlp\.(up|down)_proj$/.test(l.name));
    const run = async (mode: 'weight' | 'iterative') => {
      const model = readOnnx(MODEL);
      const data = await loadDataset(
        { kind: 'text', path: 'tinystories/valid-head.txt', tokenizer: 'stories260K/tok512.bin', separator: '<|endoftext|>', bos: true, max_length: 512, select: '1-10', segment: 128 },
        join(ROOT, 'fixtures'),
      );
      const calibration = new Calibrator(calibrationFeeds(model, data, 8), 'sequential', 1);
      return kronecker.apply(model, kronecker.params.parse({ ratio: 0.5, mode, als_iterations: 4 }), { layers: pick(model), seed: 0, random: Math.random, calibration, progress: { layer() {} }, where: 'passes[0]' });
    };
    const plain = await run('weight');
    const iterative = await run('iterative');
    expect(iterative.layers).toHaveLength(2);
    // the first layer sees the same inputs in both runs: the weighted fit must win there outright
    const first = iterative.layers[0]!;
    console.log(iterative.layers.map((l, i) => `${l.name}: output error ${plain.layers[i]!.objective!.toExponential(3)} -> ${l.objective!.toExponential(3)}, weight error ${Number(plain.layers[i]!.extra!.weight_rel_error).toFixed(3)} -> ${Number(l.extra!.weight_rel_error).toFixed(3)}`).join('\n'));
    expect(first.objective!).toBeLessThan(plain.layers[0]!.objective!);
    const total = (r: typeof plain) => r.layers.reduce((a, l) => a + l.objective!, 0);
    expect(total(iterative)).toBeLessThan(total(plain));
  });
});
