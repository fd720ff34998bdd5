import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { smoothquant } from '../../src/quantize/smoothquant.js';
import { allClose } from '../helpers.js';
import { calibratedContext, storiesCalibration, storiesLogits } from './models.js';

const ROOT = resolve(__dirname, '../..');

describe('quantize.smoothquant', () => {
  it('leaves the float outputs of stories260K unchanged and folds into every norm and up_proj', async () => {
    const model = readOnnx(join(ROOT, 'fixtures/stories260K/model.onnx'));
    const before = await storiesLogits(model);
    const data = await storiesCalibration(join(ROOT, 'fixtures'));
    const layers = linears(model);
    const result = await smoothquant.apply(model, { alpha: 0.5 }, calibratedContext(model, data, 32, layers));
    // q/k/v and gate/up fold into the norms, down_proj into up_proj, lm_head into the final norm; o_proj has no exact fold
    expect(result.layers).toHaveLength(31);
    expect(result.warnings).toHaveLength(5);
    expect(result.warnings[0]).toContain('o_proj');
    const c = allClose(await storiesLogits(model), before, 1e-4, 1e-4);
    expect(c.relFro, c.worst).toBeLessThanOrEqual(1e-5); // measured ~3e-7: float32 reassociation only
    const maxScale = Math.max(...result.layers.map((l) => Number(l.extra!.max_scale)));
    expect(maxScale).not.toBe(1);
  });
});
