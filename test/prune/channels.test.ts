import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { modelSize } from '../../src/model/size.js';
import { seededRandom } from '../../src/pipeline/pass.js';
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
