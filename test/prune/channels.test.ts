import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { convNet } from '../../fixtures/generate-convnet.js';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { modelSize } from '../../src/model/size.js';
import { toFloat32 } from '../../src/model/pack.js';
import { seededRandom } from '../../src/util/random.js';
import { channels } from '../../src/prune/channels.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { allClose, itWithShared, SHARED_MODELS } from '../helpers.js';
import { storiesLogits } from '../quantize/models.js';

const ROOT = resolve(__dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');

const logits = (model: ReturnType<typeof readOnnx>) => storiesLogits(model, { batch: 2, seq: 33, seed: 6 });

describe('prune.channels (FFN)', () => {
  it('30 %: a physically smaller model equal to the original with those channels zeroed', async () => {
    const pruned = readOnnx(MODEL);
    const before = modelSize(pruned).params;
    const result = await channels.apply(pruned, { sparsity: 0.3, importance: 'weight', multiple_of: 1 }, { layers: linears(pruned), seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' });
    expect(result.layers).toHaveLength(5);
    const keep = Math.round(172 * 0.7);
    for (const l of linears(pruned).filter((x) => x.name.includes('.mlp.'))) {
      expect(l.name.endsWith('down_proj') ? l.inFeatures : l.outFeatures).toBe(keep);
    }
    expect(before - modelSize(pruned).params).toBe(5 * (172 - keep) * 64 * 3);

    // reference: the original with the dropped channels' down_proj columns set to zero (their contribution)
    const reference = readOnnx(MODEL);
    const prunedDown = linears(pruned).filter((l) => l.name.endsWith('down_proj'));
    for (const [b, down] of linears(reference).filter((l) => l.name.endsWith('down_proj')).entries()) {
      const W = readWeight(reference, down);
      const Wp = readWeight(pruned, prunedDown[b]!);
      // columns kept are the ones whose values appear, in order, in the pruned weight
      const kept = new Set<number>();
      let c = 0;
      for (let j = 0; j < 172 && c < keep; j++) if (W[j] === Wp[c]) (kept.add(j), c++);
      for (let r = 0; r < 64; r++) for (let j = 0; j < 172; j++) if (!kept.has(j)) W[r * 172 + j] = 0;
      writeWeight(reference, down, W);
    }
    const cmp = allClose(await logits(pruned), await logits(reference), 1e-4, 1e-4);
    expect(cmp.relFro, cmp.worst).toBeLessThanOrEqual(1e-5); // measured ~1e-7
  });
});

/**
 * Prunes 30 % of the conv filters of `load()`'s model and compares it with the original whose dropped
 * filters (and biases) are zeroed: Relu(0) = 0 feeds zeros downstream, so the outputs must agree.
 */
async function checkConvPrune(load: () => Model, minLayers: number): Promise<void> {
  const pruned = load();
  const reference = load();
  const before = modelSize(pruned).params;
  const convs = linears(pruned);
  const originalWeights = new Map(linears(reference).map((l) => [l.name, readWeight(reference, l)]));
  const result = await channels.apply(pruned, { sparsity: 0.3, importance: 'weight', multiple_of: 1 }, { layers: convs, seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' });
  expect(result.warnings.length).toBeGreaterThanOrEqual(1); // the last conv produces the 10 classes
  expect(result.layers.length).toBeGreaterThanOrEqual(minLayers);
  expect(modelSize(pruned).params).toBeLessThan(before * 0.8);

  for (const stat of result.layers) {
    const l = linears(reference).find((x) => x.name === stat.name)!;
    const W = originalWeights.get(stat.name)!;
    const p = linears(pruned).find((x) => x.name === stat.name)!;
    const Wp = readWeight(pruned, p);
    // kept filters appear in order in the pruned weight, each its original row less the columns of
    // input channels an earlier conv dropped: match a filter when its pruned row is a subsequence
    const per = l.inFeatures;
    const within = (k: number, o: number) => {
      let i = 0;
      for (let j = 0; j < per && i < p.inFeatures; j++) if (W[o * per + j] === Wp[k * p.inFeatures + i]) i++;
      return i === p.inFeatures;
    };
    const dropped: number[] = [];
    let k = 0;
    for (let o = 0; o < l.outFeatures; o++) {
      if (k < p.outFeatures && within(k, o)) k++;
      else dropped.push(o);
    }
    expect(k, stat.name).toBe(p.outFeatures);
    for (const o of dropped) W.fill(0, o * per, (o + 1) * per);
    writeWeight(reference, l, W);
    if (l.bias) {
      const b = reference.tensor(l.bias);
      const bias = toFloat32(b.dataType, b.data, l.outFeatures);
      for (const o of dropped) bias[o] = 0;
      reference.setInitializer({ ...b, data: new Uint8Array(bias.buffer) });
    }
  }
  const r = seededRandom(2);
  const x = Float32Array.from({ length: 32 * 32 * 3 }, () => r());
  const run = async (m: Model) => (await (await sessionFromModel(m, { threads: 1 })).run({ input_1: new ort.Tensor('float32', x, [1, 32, 32, 3]) })).loss!.data as Float32Array;
  const cmp = allClose(await run(pruned), await run(reference), 1e-4, 1e-6);
  expect(cmp.relFro, cmp.worst).toBeLessThanOrEqual(1e-5);
}

describe('prune.channels (conv)', () => {
  itWithShared('30 % of squeezenet-cifar10 conv filters: a smaller model that runs, equal to zeroing those filters; the classifier conv is kept', async () => {
    await checkConvPrune(() => readOnnx(SHARED_MODELS.squeezenet), 8);
  });

  it('30 % of the generated SqueezeNet-style convnet\'s conv filters: a smaller model that runs, equal to zeroing those filters; the classifier conv is kept', async () => {
    await checkConvPrune(() => convNet('convnet.onnx'), 7); // all but the classifier
  });
});
