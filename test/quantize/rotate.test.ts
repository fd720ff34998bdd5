import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { DataType } from '../../src/model/dtype.js';
import { makeNode } from '../../src/model/graph.js';
import { loadModel } from '../../src/model/load.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { toFloat32 } from '../../src/model/pack.js';
import { randomOrthogonal } from '../../src/quantize/orthogonal.js';
import { rotate } from '../../src/quantize/rotate.js';
import { sessionFromModel } from '../../src/runtime/ort.js';
import { allClose, FIXTURES, fixturePath } from '../helpers.js';
import { singleMatMul, storiesCalibration, storiesLogits } from './models.js';
import { calibrationFeeds } from '../../src/calibrate/feeds.js';

/** quantize.rotate: an orthogonal rotation of the residual stream, exact in float. */

const ctx = { layers: [], seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' };

/** QᵀQ − I, largest element */
function orthogonalityError(Q: Float64Array, n: number): number {
  let worst = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let v = 0;
      for (let k = 0; k < n; k++) v += Q[k * n + i]! * Q[k * n + j]!;
      worst = Math.max(worst, Math.abs(v - (i === j ? 1 : 0)));
    }
  }
  return worst;
}

/** logits of a model built from safetensors (with its KV-cache inputs) on two calibration segments, fed as calibration feeds them */
async function builtLogits(model: Model): Promise<Float32Array[]> {
  const s = await sessionFromModel(model, { threads: 1 });
  const feeds = calibrationFeeds(model, await storiesCalibration(fixturePath()), 2);
  const out: Float32Array[] = [];
  for (const f of feeds) out.push((await s.run(f)).logits!.data as Float32Array);
  return out;
}

function vector(model: Model, name: string): Float32Array {
  const t = model.tensor(name);
  return toFloat32(t.dataType, t.data, t.dims.reduce((a, b) => a * b, 1));
}

describe('orthogonal rotations', () => {
  it('the randomized Hadamard (n = 64) and the Gram–Schmidt Gaussian (n = 20) matrices are orthogonal to float64 precision, and the seed changes them', () => {
    const h = randomOrthogonal(64, 3);
    expect(h.kind).toBe('hadamard');
    expect(orthogonalityError(h.Q, 64)).toBeLessThan(1e-12);
    const g = randomOrthogonal(20, 3);
    expect(g.kind).toBe('gaussian');
    expect(orthogonalityError(g.Q, 20)).toBeLessThan(1e-12);
    expect(Array.from(randomOrthogonal(64, 4).Q)).not.toEqual(Array.from(h.Q));
  });
});

describe('quantize.rotate', () => {
  it('leaves stories260K\'s logits unchanged (ONNX Runtime, before vs after), folds every norm weight to ones and rotates embedding, 26 readers and 10 writers', async () => {
    const model = loadModel(FIXTURES.stories);
    const before = await storiesLogits(model);
    const E0 = vector(model, 'model.embed_tokens.weight');
    const ops = (model.graph.node ?? []).map((n) => n.op_type);
    const result = await rotate.apply(model, rotate.params.parse({}), ctx);
    expect(result.summary).toMatchObject({ rotation: 'randomized Hadamard', dim: 64, readers: 26, writers: 10, norms: 11 });
    expect((model.graph.node ?? []).map((n) => n.op_type)).toEqual(ops);
    for (const t of model.graph.initializer ?? []) if (t.name!.endsWith('layernorm.weight') || t.name === 'model.norm.weight') expect(Array.from(vector(model, t.name!)).every((v) => v === 1)).toBe(true);
    expect(allClose(vector(model, 'model.embed_tokens.weight'), E0, 1e-3, 1e-3).ok).toBe(false);
    const c = allClose(await storiesLogits(model), before, 1e-4, 1e-4);
    expect(c.ok, c.worst).toBe(true);
    expect(c.relFro).toBeLessThan(1e-5); // measured 2.8e-7: float32 reassociation only
  });

  it('a lm_head tied to the embedding (stories260K built from safetensors: MatMul by Transpose(E)) gets its own weight; logits unchanged', async () => {
    const model = loadModel(FIXTURES.storiesSafetensors);
    const head = linears(model).at(-1)!;
    expect(head.weight).toBe('model.embed_tokens.weight');
    const before = await builtLogits(model);
    await rotate.apply(model, rotate.params.parse({ seed: 5 }), ctx);
    expect(linears(model).at(-1)!.weight).not.toBe('model.embed_tokens.weight');
    const after = await builtLogits(model);
    const c = allClose(Float32Array.from(after.flatMap((a) => [...a])), Float32Array.from(before.flatMap((a) => [...a])), 1e-4, 1e-4);
    expect(c.ok, c.worst).toBe(true);
    expect(c.relFro).toBeLessThan(1e-5); // measured 4.2e-7
  });

  it('refuses a residual stream that a per-channel Mul also reads, naming it', async () => {
    const model = loadModel(FIXTURES.stories);
    const h = model.graph.node!.find((n) => n.op_type === 'Gather' && n.input![0] === 'model.embed_tokens.weight')!.output![0]!;
    model.setInitializer({ name: 'probe_scale', dataType: DataType.FLOAT, dims: [64], data: new Uint8Array(new Float32Array(64).fill(2).buffer) });
    model.graph.node!.push(makeNode('Mul', [h, 'probe_scale'], ['probe'], '/probe/Mul'));
    model.graph.output!.push({ name: 'probe' });
    await expect(rotate.apply(model, rotate.params.parse({}), ctx)).rejects.toThrow(/the residual value '\/embed_tokens\/Gather_output_0' feeds '\/probe\/Mul' \(Mul\), which would see rotated values/);
  });

  it('a model without a token embedding is a user error', async () => {
    await expect(rotate.apply(singleMatMul(64, 8), rotate.params.parse({}), ctx)).rejects.toThrow(UserError);
  });
});
