import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { linears } from '../../src/model/linears.js';
import { loadModel } from '../../src/model/load.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { modelSize } from '../../src/model/size.js';
import { openSafetensors, writeSafetensors } from '../../src/model/safetensors.js';
import { seededRandom } from '../../src/util/random.js';
import { angularDistance, layers } from '../../src/prune/layers.js';
import { ort, sessionFromModel } from '../../src/runtime/ort.js';
import { allClose, tempDir } from '../helpers.js';
import { decoderFeeds } from '../decoder-feeds.js';

const ROOT = resolve(__dirname, '../..');
const tmp = tempDir('pare-layers-');
afterAll(() => tmp.cleanup());

async function logits(model: ReturnType<typeof readOnnx>): Promise<Float32Array> {
  const s = await sessionFromModel(model, { threads: 1 });
  const r = seededRandom(3);
  const ids = BigInt64Array.from({ length: 2 * 30 }, () => BigInt(Math.floor(r() * 512)));
  return (await s.run(decoderFeeds(s, ids, 2, 30))).logits!.data as Float32Array;
}

describe('prune.layers', () => {
  it('angular distance: 0 for the same direction, 1/2 orthogonal, 1 opposite', () => {
    const a = Float32Array.of(1, 0, 2, 2);
    expect(angularDistance(a, Float32Array.of(3, 0, 1, 1), 2).sum).toBeCloseTo(0 + 0, 12);
    expect(angularDistance(Float32Array.of(1, 0), Float32Array.of(0, 5), 2).sum).toBeCloseTo(0.5, 12);
    expect(angularDistance(Float32Array.of(1, 1), Float32Array.of(-2, -2), 2).sum).toBeCloseTo(1, 12);
  });

  it('removing block 2 of the exported stories260K equals a 4-layer checkpoint built without it', async () => {
    const model = readOnnx(join(ROOT, 'fixtures/stories260K/model.onnx'));
    const before = modelSize(model).params;
    const result = await layers.apply(model, { count: 1, contiguous: false, blocks: [2] }, { layers: linears(model), seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' });
    expect(result.layers.map((l) => l.name)).toEqual(['layers.2']);
    expect(linears(model).some((l) => l.name.startsWith('layers.2.'))).toBe(false);
    expect(before - modelSize(model).params).toBe(181760 / 4);

    // independent reference: the safetensors checkpoint with layer 2 dropped and 3, 4 renumbered
    const st = openSafetensors(join(ROOT, 'fixtures/stories260K/model.safetensors'));
    const tensors = [...st.tensors.values()]
      .filter((e) => !e.name.startsWith('model.layers.2.'))
      .map((e) => ({ name: e.name.replace(/^model\.layers\.(\d+)\./, (_, i) => `model.layers.${Number(i) > 2 ? Number(i) - 1 : i}.`), dataType: e.dataType, shape: e.shape, data: st.read(e.name) }));
    st.close();
    writeSafetensors(join(tmp.dir, 'model.safetensors'), tensors);
    const config = JSON.parse(readFileSync(join(ROOT, 'fixtures/stories260K/config.json'), 'utf8'));
    writeFileSync(join(tmp.dir, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: 4 }));
    const reference = loadModel(join(tmp.dir, 'model.safetensors'));
    const c = allClose(await logits(model), await logits(reference), 1e-4, 1e-4);
    expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5); // measured ~1e-7
  });
});
