import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Calibrator } from '../../src/calibrate/calibrator.js';
import { calibrationFeeds } from '../../src/calibrate/feeds.js';
import { loadDataset } from '../../src/data/load.js';
import { linears } from '../../src/model/linears.js';
import { loadModel } from '../../src/model/load.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { openSafetensors, writeSafetensors } from '../../src/model/safetensors.js';
import { modelSize } from '../../src/model/size.js';
import { shareLayers } from '../../src/share/layers.js';
import { allClose, tempDir } from '../helpers.js';
import { storiesLogits } from '../quantize/models.js';

const ROOT = resolve(__dirname, '../..');
const tmp = tempDir('pare-share-');
afterAll(() => tmp.cleanup());

const logits = (model: ReturnType<typeof readOnnx>) => storiesLogits(model, { batch: 2, seq: 21, seed: 31 });

describe('share.layers', () => {
  it('two block pairs share weights: two blocks fewer in the file, equal to a checkpoint with those blocks copied', async () => {
    const model = readOnnx(join(ROOT, 'fixtures/stories260K/model.onnx'));
    const data = await loadDataset(
      { kind: 'text', path: 'tinystories/valid-head.txt', tokenizer: 'stories260K/tok512.bin', separator: '<|endoftext|>', bos: true, max_length: 512, select: '1-10', segment: 128 },
      join(ROOT, 'fixtures'),
    );
    const params = modelSize(model).params;
    const result = await shareLayers.apply(model, { pairs: 2 }, {
      layers: linears(model), seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]',
      calibration: new Calibrator(calibrationFeeds(model, data, 16), 'oneshot', 1),
    });
    expect(result.layers).toHaveLength(2);
    const perBlock = 2 * 64 * 64 + 2 * 32 * 64 + 3 * 172 * 64 + 2 * 64; // q, o, k, v, MLP and two norms
    expect(params - modelSize(model).params).toBe(2 * perBlock);

    // reference: the safetensors checkpoint with each sharing block's tensors replaced by its partner's
    const pairs = result.layers.map((l) => [Number(String(l.extra!.shares_weights_of).split('.')[1]), Number(l.name.split('.')[1])] as const);
    const st = openSafetensors(join(ROOT, 'fixtures/stories260K/model.safetensors'));
    const tensors = [...st.tensors.values()].map((e) => {
      const m = /^model\.layers\.(\d+)\.(.*)$/.exec(e.name);
      const pair = m && pairs.find(([, second]) => second === Number(m[1]));
      return { name: e.name, dataType: e.dataType, shape: e.shape, data: st.read(pair ? `model.layers.${pair[0]}.${m![2]}` : e.name) };
    });
    st.close();
    writeSafetensors(join(tmp.dir, 'model.safetensors'), tensors);
    writeFileSync(join(tmp.dir, 'config.json'), readFileSync(join(ROOT, 'fixtures/stories260K/config.json')));
    const c = allClose(await logits(model), await logits(loadModel(join(tmp.dir, 'model.safetensors'))), 1e-4, 1e-4);
    expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5);
  });
});
