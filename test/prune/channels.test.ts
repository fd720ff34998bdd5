import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { modelSize } from '../../src/model/size.js';
import { toFloat32 } from '../../src/model/pack.js';
import { seededRandom } from '../../src/util/random.js';
import { channels } from '../../src/prune/channels.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { allClose } from '../helpers.js';

const ROOT = resolve(__dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');

async function logits(model: ReturnType<typeof readOnnx>): Promise<Float32Array> {
  const s = await sessionFromModel(model, { threads: 1 });
  const r = seededRandom(6);
  const ids = BigInt64Array.from({ length: 2 * 33 }, () => BigInt(Math.floor(r() * 512)));
  return (await s.run({ input_ids: new ort.Tensor('int64', ids, [2, 33]) })).logits!.data as Float32Array;
}

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

describe('prune.channels (conv)', () => {
  it('30 % of squeezenet-cifar10 conv filters: a smaller model that runs, equal to zeroing those filters; the classifier conv is kept', async () => {
    const { SHARED_MODELS } = await import('../helpers.js');
    const pruned = readOnnx(SHARED_MODELS.squeezenet);
    const reference = readOnnx(SHARED_MODELS.squeezenet);
    const before = modelSize(pruned).params;
    const convs = linears(pruned);
    const originalWeights = new Map(linears(reference).map((l) => [l.name, readWeight(reference, l)]));
    const result = await channels.apply(pruned, { sparsity: 0.3, importance: 'weight', multiple_of: 1 }, { layers: convs, seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' });
    expect(result.warnings.length).toBeGreaterThanOrEqual(1); // the last conv produces the 10 classes
    expect(result.layers.length).toBeGreaterThanOrEqual(8);
    expect(modelSize(pruned).params).toBeLessThan(before * 0.8);

    // reference: zero the dropped filters (and their biases) of the original; Relu(0) = 0 feeds zeros downstream
    for (const stat of result.layers) {
      const l = linears(reference).find((x) => x.name === stat.name)!;
      const W = originalWeights.get(stat.name)!;
      const p = linears(pruned).find((x) => x.name === stat.name)!;
      const Wp = readWeight(pruned, p);
      // kept filters appear in order in the pruned weight; match each by its first input column
      const per = l.inFeatures;
      const dropped: number[] = [];
      let k = 0;
      for (let o = 0; o < l.outFeatures; o++) {
        if (k < p.outFeatures && W[o * per] === Wp[k * p.inFeatures]) k++;
        else dropped.push(o);
      }
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
    const run = async (m: ReturnType<typeof readOnnx>) => (await (await sessionFromModel(m, { threads: 1 })).run({ input_1: new ort.Tensor('float32', x, [1, 32, 32, 3]) })).loss!.data as Float32Array;
    const cmp = allClose(await run(pruned), await run(reference), 1e-4, 1e-6);
    expect(cmp.relFro, cmp.worst).toBeLessThanOrEqual(1e-5);
  });
});
