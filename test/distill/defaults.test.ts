import { describe, expect, it } from 'vitest';
import { defaultLearningRate, trainableInitializers } from '../../src/distill/trainable.js';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { rtn } from '../../src/quantize/rtn.js';
import { FIXTURES } from '../helpers.js';

describe('distill.kd defaults', () => {
  it('without params.lr: 1e-3 for a student with quantized codes, 2e-3 for a float one (the sweep in bench/RESULTS.md)', async () => {
    const float = readOnnx(FIXTURES.stories);
    const blocks = (m: typeof float) => linears(m).filter((l) => l.name.startsWith('layers.'));
    expect(defaultLearningRate(float, trainableInitializers(float, blocks(float)))).toBe(2e-3);
    const quantized = readOnnx(FIXTURES.stories);
    const ctx = { layers: blocks(quantized), seed: 0, random: Math.random, progress: { layer() {} }, where: 'passes[0]' };
    await rtn.apply(quantized, rtn.params.parse({ bits: 8, granularity: 'channel' }), ctx);
    const trained = trainableInitializers(quantized, blocks(quantized));
    expect([...trained].every((n) => quantized.initializer(n)?.data_type !== 1)).toBe(true); // int8 codes
    expect(defaultLearningRate(quantized, trained)).toBe(1e-3);
  });
});
