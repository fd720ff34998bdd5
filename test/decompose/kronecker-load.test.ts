import type * as tfjs from '@tensorflow/tfjs';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kronecker } from '../../src/decompose/kronecker.js';
import { emitKroneckerAtLoad } from '../../src/decompose/kronecker-load.js';
import type { KroneckerShape } from '../../src/decompose/kronecker-math.js';
import { trainableInitializers } from '../../src/distill/trainable.js';
import { DataType } from '../../src/model/dtype.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { decodeModelProto, encodeInline } from '../../src/model/onnx-io.js';
import { int64ToNumber } from '../../src/model/onnx-schema.js';
import { relativeError } from '../../src/obs/output-error.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { tempDir } from '../helpers.js';
import { denseApply, oneLinear, random, shuffled } from './kronecker-fixtures.js';

interface Case {
  shape: KroneckerShape;
  terms: number;
  permute?: boolean;
}

function emitted(c: Case): { model: Model; A: Float64Array[]; B: Float64Array[]; perms?: { rowPerm: Int32Array; colPerm: Int32Array } } {
  const { shape, terms } = c;
  const model = oneLinear(shape.m1 * shape.m2, shape.n1 * shape.n2);
  const A = Array.from({ length: terms }, (_, r) => random(shape.m1 * shape.n1, 10 + r));
  const B = Array.from({ length: terms }, (_, r) => random(shape.m2 * shape.n2, 20 + r));
  const perms = c.permute ? { rowPerm: shuffled(shape.m1 * shape.m2, 3), colPerm: shuffled(shape.n1 * shape.n2, 4) } : undefined;
  emitKroneckerAtLoad(model, linears(model)[0]!, { shape, A, B, sigma: new Float64Array(terms) }, perms);
  return { model, A, B, perms };
}

/** The graph ONNX Runtime runs after its load-time optimizations (optimizedModelFilePath). */
async function optimizedGraph(model: Model, level: 'basic' | 'all') {
  const { dir, cleanup } = tempDir();
  try {
    const path = join(dir, 'optimized.onnx');
    await (await ort.InferenceSession.create(encodeInline(model), { optimizedModelFilePath: path, graphOptimizationLevel: level, intraOpNumThreads: 1, logSeverityLevel: 4 })).release();
    return decodeModelProto(readFileSync(path), path).graph!;
  } finally {
    cleanup();
  }
}

const floatsOf = (t: { raw_data?: Uint8Array; float_data?: number[] }) => (t.raw_data?.byteLength ? new Float32Array(new Uint8Array(t.raw_data).buffer) : Float32Array.from(t.float_data ?? []));

describe('Kronecker expanded at load (runtime: dense_at_load)', () => {
  const cases: Case[] = [
    { shape: { m1: 4, n1: 8, m2: 6, n2: 3 }, terms: 3 }, // the expansion's Transpose moves data
    { shape: { m1: 1, n1: 12, m2: 10, n2: 1 }, terms: 4 }, // rank-like: Reshape only
    { shape: { m1: 5, n1: 4, m2: 2, n2: 3 }, terms: 2, permute: true }, // Gathers on the weight's rows and columns
    { shape: { m1: 10, n1: 1, m2: 1, n2: 12 }, terms: 2, permute: true },
  ];
  for (const c of cases) {
    const { m1, n1, m2, n2 } = c.shape;
    const [m, n] = [m1 * m2, n1 * n2];
    const name = `${m1}×${n1} ⊗ ${m2}×${n2}, ${c.terms} term(s)${c.permute ? ', permuted' : ''}`;

    it(`ORT output equals the float64 dense Σ A⊗B within 1e-6: ${name}`, async () => {
      const { model, A, B, perms } = emitted(c);
      const x = Float32Array.from(random(6 * n, 7));
      const session = await sessionFromModel(model, { threads: 1 });
      const y = (await session.run({ x: new ort.Tensor('float32', x, [2, 3, n]) })).y!;
      await session.release();
      expect(y.dims).toEqual([2, 3, m]);
      expect(relativeError(denseApply(c.shape, A, B, x, 6, perms), y.data as Float32Array)).toBeLessThan(1e-6); // float32 expansion and GEMM against float64
    });

    for (const level of ['basic', 'all'] as const) {
      it(`ORT's optimized graph (level ${level}) is the dense model's, with the expanded weight as a float initializer: ${name}`, async () => {
        const { model, A, B, perms } = emitted(c);
        const graph = await optimizedGraph(model, level);
        const dense = await optimizedGraph(oneLinear(m, n), level);
        expect((graph.node ?? []).map((node) => node.op_type)).toEqual((dense.node ?? []).map((node) => node.op_type));
        expect((graph.node ?? []).map((node) => node.op_type)).toEqual(['MatMul']);
        const weight = graph.initializer!.find((t) => t.name === graph.node![0]!.input![1]);
        expect(weight?.data_type).toBe(DataType.FLOAT);
        expect((weight?.dims ?? []).map(int64ToNumber)).toEqual([n, m]);
        // x = I gives the rows of the weight the MatMul multiplies by: y[t, o] = W[o, t]
        const identity = Float32Array.from({ length: n * n }, (_, k) => (k % (n + 1) === 0 ? 1 : 0));
        expect(relativeError(denseApply(c.shape, A, B, identity, n, perms), floatsOf(weight!))).toBeLessThan(1e-6);
      });
    }

    it(`the file stores the factors, not the dense weight: ${name}`, () => {
      const { model } = emitted(c);
      const bytes = (dt: number) => (model.graph.initializer ?? []).filter((t) => t.data_type === dt).reduce((a, t) => a + (t.raw_data?.byteLength ?? 0), 0);
      expect(bytes(DataType.FLOAT)).toBe(c.terms * (m1 * n1 + m2 * n2) * 4);
      expect(bytes(DataType.INT32)).toBe(c.permute ? (m + n) * 4 : 0);
      expect(bytes(DataType.INT64)).toBeLessThanOrEqual(6 * 8); // the expansion's two target shapes
    });
  }

  it('a 256×512 layer as 2 terms of 16×32 ⊗ 16×16: the file is the factors\' size, under 1/40 of the dense file', () => {
    const { model } = emitted({ shape: { m1: 16, n1: 32, m2: 16, n2: 16 }, terms: 2 });
    const factors = 2 * (16 * 32 + 16 * 16) * 4;
    const file = encodeInline(model).byteLength;
    expect(file).toBeGreaterThan(factors);
    expect(file).toBeLessThan(factors + 2048);
    expect(file).toBeLessThan(encodeInline(oneLinear(256, 512)).byteLength / 40);
  });

  it('the expansion MatMul is no layer; distillation trains both factors, and the tfjs executor reproduces ORT', async () => {
    const { model } = emitted({ shape: { m1: 4, n1: 8, m2: 6, n2: 3 }, terms: 3 });
    expect(linears(model)).toEqual([]);
    const trained = [...trainableInitializers(model, [])].sort();
    expect(trained).toEqual(['layers.0.proj.kron_a', 'layers.0.proj.kron_b']);
    const { OnnxExecutor } = await import('../../src/runtime/tfjs/executor.js');
    const exec = await OnnxExecutor.create(model, { trainable: (t) => trained.includes(t) });
    try {
      const tf = exec.tf;
      const x = Float32Array.from(random(6 * 24, 7));
      const session = await sessionFromModel(model, { threads: 1 });
      const want = (await session.run({ x: new ort.Tensor('float32', x, [2, 3, 24]) })).y!.data as Float32Array;
      await session.release();
      const xs = tf.tensor(x, [2, 3, 24]);
      const got = exec.run({ x: xs }).y!;
      expect(relativeError(want, got.dataSync())).toBeLessThan(1e-6);
      // the loss Σ y² has a gradient through the expansion into both factors
      const { grads } = tf.variableGrads(() => tf.sum(tf.square(exec.run({ x: xs }).y!)) as tfjs.Scalar);
      for (const t of trained) expect(tf.norm(grads[exec.variables.get(t)!.name]!).dataSync()[0]).toBeGreaterThan(0);
      got.dispose();
      xs.dispose();
    } finally {
      exec.dispose();
    }
  });

  it('the pass: runtime dense_at_load writes the same factors as factored, and the two run equal in ORT', async () => {
    const run = async (runtime: 'factored' | 'dense_at_load') => {
      const model = oneLinear(24, 24);
      const t = model.graph.initializer![0]!;
      t.raw_data = new Uint8Array(Float32Array.from(random(24 * 24, 5)).buffer);
      const params = kronecker.params.parse({ terms: 2, permute: true, runtime });
      await kronecker.apply(model, params, { layers: linears(model), seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' });
      const session = await sessionFromModel(model, { threads: 1 });
      const y = (await session.run({ x: new ort.Tensor('float32', Float32Array.from(random(6 * 24, 9)), [2, 3, 24]) })).y!.data as Float32Array;
      await session.release();
      return y;
    };
    const factored = await run('factored');
    expect(relativeError(factored, await run('dense_at_load'))).toBeLessThan(1e-6);
  });

  it('distill.kd whose targets match no layer: accepted when the model stores dense_at_load factors (they are what it trains), a user error otherwise', async () => {
    const { parseRecipe } = await import('../../src/recipe/parse.js');
    const { PASSES } = await import('../../src/pipeline/registry.js');
    const { selectTargets } = await import('../../src/pipeline/plan.js');
    const { UserError } = await import('../../src/errors.js');
    const text = 'version: 1\npasses:\n  - pass: distill.kd\n    targets: ["layers.*"]\n    params: { steps: 2 }\n';
    const recipe = { recipe: parseRecipe(text, 'r.yaml', PASSES), text, sha256: '', path: 'r.yaml', dir: '.' } as Parameters<typeof selectTargets>[1];
    expect(selectTargets(emitted({ shape: { m1: 4, n1: 8, m2: 6, n2: 3 }, terms: 3 }).model, recipe, 0)).toEqual([]);
    const plain = oneLinear(24, 24);
    plain.graph.node![0]!.name = '/head/MatMul'; // a layer the targets miss
    expect(() => selectTargets(plain, recipe, 0)).toThrow(UserError);
    expect(() => selectTargets(plain, recipe, 0)).toThrow(/targets \["layers\.\*"\] matched no layer/);
  });

  it('runtime is a recipe param with two values', () => {
    expect(kronecker.params.parse({}).runtime).toBe('dense_at_load');
    const r = kronecker.params.safeParse({ runtime: 'dense' });
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => i.path.join('.'))).toContain('runtime');
  });
});
