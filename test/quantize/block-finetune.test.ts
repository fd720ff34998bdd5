import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Calibrator } from '../../src/calibrate/calibrator.js';
import { calibrationFeeds, type Feeds } from '../../src/calibrate/feeds.js';
import { UserError } from '../../src/errors.js';
import { feedsNll } from '../../src/eval/feeds-loss.js';
import { readWeight } from '../../src/model/linear-weights.js';
import { linears, type LinearLayer } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import type { PassContext } from '../../src/pass/pass.js';
import { mixed } from '../../src/quantize/mixed.js';
import { rotate } from '../../src/quantize/rotate.js';
import { trellis } from '../../src/quantize/trellis.js';
import { ortBlockLosses as blockLosses } from './block-losses.js';
import { storiesCalibration } from './models.js';

/**
 * Within-block fine-tuning (`finetune`) while quantize.trellis / quantize.mixed code their layers:
 * measured on the written models in ONNX Runtime against the float model, it must lower every
 * decoder block's output error and the calibration loss at the same stored bytes, train only the
 * targeted layers not yet coded, and refuse what it cannot do.
 */

const ROOT = resolve(__dirname, '../..');
const FLOAT = join(ROOT, 'fixtures/stories260K/model.onnx');
const SAMPLES = 6;
// a small trellis (L = 8) keeps the Viterbi cheap; the fine-tuning is what is under test
const TRELLIS = { bits: 2, state_bits: 8, block_size: 16 };

async function setup(): Promise<{ model: Model; feeds: Feeds[] }> {
  const model = readOnnx(FLOAT);
  return { model, feeds: calibrationFeeds(model, await storiesCalibration(join(ROOT, 'fixtures')), SAMPLES) };
}

const ctx = (model: Model, feeds: Feeds[], layers: LinearLayer[], original: string | null = FLOAT): PassContext => ({
  layers,
  seed: 0,
  random: Math.random,
  calibration: new Calibrator(feeds, 'sequential', 1),
  progress: { layer() {} },
  where: 'passes[0]',
  ...(original ? { original: () => original } : {}),
});

const blockLinears = (model: Model) => linears(model).filter((l) => l.name.startsWith('layers.'));

const ortBlockLosses = (model: Model, feeds: Feeds[]) => blockLosses(model, feeds, FLOAT);

describe('finetune (within-block fine-tuning while coding)', () => {
  it('quantize.trellis: lowers every block output error and the calibration loss in ONNX Runtime at the same stored bytes', async () => {
    const plain = await setup();
    const plainResult = await trellis.apply(plain.model, trellis.params.parse(TRELLIS), ctx(plain.model, plain.feeds, blockLinears(plain.model)));
    const tuned = await setup();
    const tunedResult = await trellis.apply(tuned.model, trellis.params.parse({ ...TRELLIS, finetune: { epochs: 2, lr: 1e-4 } }), ctx(tuned.model, tuned.feeds, blockLinears(tuned.model)));

    expect(tunedResult.layers.map((l) => l.bytes_after)).toEqual(plainResult.layers.map((l) => l.bytes_after));
    // every layer but each block's last trains the rest of its block, and reports that training's block loss
    const reported = tunedResult.layers.filter((l) => l.extra?.finetune_loss !== undefined);
    expect(reported.map((l) => l.name)).toEqual(tunedResult.layers.map((l) => l.name).filter((n) => !n.endsWith('down_proj')));
    for (const l of reported) {
      const [before, after] = String(l.extra!.finetune_loss).split(' -> ').map(Number);
      expect(after).toBeLessThan(before!);
    }

    const [lossPlain, lossTuned] = [await ortBlockLosses(plain.model, plain.feeds), await ortBlockLosses(tuned.model, tuned.feeds)];
    expect(lossTuned).toHaveLength(5);
    for (let b = 0; b < 5; b++) expect(lossTuned[b]!, `block ${b}: ${lossTuned[b]} vs ${lossPlain[b]}`).toBeLessThan(lossPlain[b]!);
    expect(await feedsNll(tuned.model, tuned.feeds)).toBeLessThan(await feedsNll(plain.model, plain.feeds));
  }, 120_000);

  it('quantize.mixed: trains only the targeted layers not yet coded; untargeted weights and every other initializer stay as they were', async () => {
    const { model, feeds } = await setup();
    const input = readOnnx(FLOAT);
    const attention = blockLinears(model).filter((l) => l.name.includes('self_attn'));
    const params = mixed.params.parse({ budget_bits: 3.5, bits: [3, 4], group_sizes: [64], sensitivity: 'output', trellis_bits: [2, 3], trellis_state_bits: 8, finetune: { epochs: 1, lr: 1e-4 } });
    const result = await mixed.apply(model, params, ctx(model, feeds, attention));
    // q, k, v train the layers after them in their block; o_proj is the block's last target
    expect(result.layers.filter((l) => l.extra?.finetune_loss !== undefined).map((l) => l.name)).toEqual(attention.map((l) => l.name).filter((n) => !n.endsWith('o_proj')));
    const mlp = linears(input).filter((l) => l.name.startsWith('layers.') && l.name.includes('.mlp.'));
    expect(mlp).toHaveLength(15);
    const own = new Map(linears(model).map((l) => [l.name, l]));
    for (const l of mlp) expect(readWeight(model, own.get(l.name)!)).toEqual(readWeight(input, l));
    const targetWeights = new Set(attention.map((l) => l.weight));
    for (const t of input.graph.initializer ?? []) {
      if (targetWeights.has(t.name!) || !model.hasInitializer(t.name!)) continue;
      expect(Buffer.from(model.tensor(t.name!).data).equals(Buffer.from(input.tensor(t.name!).data)), t.name!).toBe(true);
    }
  }, 120_000);

  it('refuses bias_correction with finetune, a changed residual stream, and a run with no float model, saying why', async () => {
    expect(() => mixed.params.parse({ budget_bits: 4, bias_correction: true, finetune: {} })).toThrow(/finetune trains the block without the correction biases/);

    const rotated = await setup();
    await rotate.apply(rotated.model, rotate.params.parse({}), { ...ctx(rotated.model, rotated.feeds, []), where: 'passes[0]' });
    const run = trellis.apply(rotated.model, trellis.params.parse({ ...TRELLIS, finetune: {} }), ctx(rotated.model, rotated.feeds, blockLinears(rotated.model)));
    await expect(run).rejects.toThrow(UserError);
    await expect(run).rejects.toThrow(/quantize\.trellis's targets are the recipe input model's block outputs.*differs.*quantize\.rotate/);

    const alone = await setup();
    const noFloat = trellis.apply(alone.model, trellis.params.parse({ ...TRELLIS, finetune: {} }), ctx(alone.model, alone.feeds, blockLinears(alone.model), null));
    await expect(noFloat).rejects.toThrow(/quantize\.trellis's finetune needs the float model its targets come from; run it inside `pare compress`/);
  }, 120_000);
});
