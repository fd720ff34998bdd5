import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { distillKd } from '../../src/distill/kd.js';
import { BestState, splitHeldOut } from '../../src/distill/early-stop.js';
import { readWeight } from '../../src/model/linear-weights.js';
import { linears } from '../../src/model/linears.js';
import { readOnnx } from '../../src/model/onnx-io.js';
import { magnitude } from '../../src/prune/magnitude.js';
import { seededRandom } from '../../src/util/random.js';
import type { PassContext } from '../../src/pass/pass.js';
import type { Model } from '../../src/model/model.js';

const ROOT = resolve(__dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');

function context(model: Model): PassContext {
  return { layers: linears(model).filter((l) => l.name.startsWith('layers.')), seed: 0, random: seededRandom(1), progress: { layer() {} }, where: 'passes[1]', original: () => MODEL, recipeDir: ROOT };
}

describe('early stopping on held-out windows', () => {
  it('keeps the state of the lowest score and stops after `patience` measurements without a new best', () => {
    const best = new BestState<string>(2);
    const scores = [3, 2, 2.5, 1.5, 1.7, 1.6, 1.55];
    const stops = scores.map((s, i) => best.offer(i * 10, s, () => `state@${i * 10}`));
    expect(stops).toEqual([false, false, false, false, false, true, true]);
    expect(best.best).toEqual({ step: 30, score: 1.5 });
    expect(best.bestIfNotLast()).toBe('state@30');
    const last = new BestState<string>(0);
    [3, 2, 1].forEach((s, i) => last.offer(i, s, () => `s${i}`));
    expect(last.bestIfNotLast()).toBeUndefined(); // the last measurement is the best: nothing to restore
  });

  it('holds out the last windows, and refuses to hold out all of them, naming held_out', () => {
    const rows = [1, 2, 3, 4, 5].map((v) => Int32Array.of(v));
    const { train, heldOut } = splitHeldOut(rows, 2, 'passes[1]');
    expect(train.map((r) => r[0])).toEqual([1, 2, 3]);
    expect(heldOut.map((r) => r[0])).toEqual([4, 5]);
    expect(() => splitHeldOut(rows, 5, 'passes[1]')).toThrow(/passes\[1\]\.params\.held_out/);
  });

  it('distill.kd with a destructive learning rate stops at the first worse measurement and writes back the starting weights', async () => {
    const model = readOnnx(MODEL);
    const ctx = context(model);
    await magnitude.apply(model, magnitude.params.parse({ sparsity: 0.5 }), ctx);
    const before = ctx.layers.map((l) => readWeight(model, l));
    const params = { steps: 8, batch_size: 2, seq_len: 32, lr: 0.1, warmup: 0, clip: 0, samples: 12, start_token: 1, checkpoint_every: 0, held_out: 4, eval_every: 2, patience: 1, threads: 2 };
    const result = await distillKd.apply(model, distillKd.params.parse(params), context(model));
    const s = result.summary!;
    expect(s.best_step).toBe(0);
    expect(s.stopped_at_step).toBe(2);
    expect(Number(s.held_out_kl_best)).toBeLessThan(Number(String(s.held_out_kl).split(' ')[1]!.split(':')[1]));
    expect(s.training_windows).toBe(8);
    ctx.layers.forEach((l, j) => expect(readWeight(model, l)).toEqual(before[j]));
  }, 60_000);
});
