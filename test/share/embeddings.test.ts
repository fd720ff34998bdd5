import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readWeight, writeWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { modelSize } from '../../src/model/size.js';
import { seededRandom } from '../../src/util/random.js';
import { shareEmbeddings } from '../../src/share/embeddings.js';
import { storiesLogits } from '../quantize/models.js';

const MODEL = join(resolve(__dirname, '../..'), 'fixtures/stories260K/model.onnx');
const ctx = (layers: ReturnType<typeof linears>) => ({ layers, seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' });

const logits = (model: ReturnType<typeof readOnnx>) => storiesLogits(model, { batch: 1, seq: 20, seed: 30 });

describe('share.embeddings', () => {
  it("re-ties the exported stories260K head to the embedding: identical logits, 512×64 fewer weights", async () => {
    const model = readOnnx(MODEL);
    const before = await logits(model);
    const params = modelSize(model).params;
    const r = await shareEmbeddings.apply(model, { max_relative_change: 1 }, ctx(linears(model)));
    expect(r.layers.map((l) => l.name)).toEqual(['lm_head']);
    expect(r.layers[0]!.objective).toBe(0);
    expect(modelSize(model).params).toBe(params - 512 * 64);
    expect(await logits(model)).toEqual(before);
  });

  it('an untied head that differs beyond max_relative_change is refused, naming the layer', async () => {
    const model = readOnnx(MODEL);
    const head = linears(model).find((l) => l.name === 'lm_head')!;
    const r = seededRandom(1);
    writeWeight(model, head, readWeight(model, head).map((w) => w + (r() - 0.5)));
    await expect(shareEmbeddings.apply(model, { max_relative_change: 0.01 }, ctx(linears(model)))).rejects.toThrow(/'lm_head' differs from the embedding/);
  });
});
