import { join, resolve } from 'node:path';
import type * as tfjs from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { KdParams, studentLoss } from '../../src/distill/kd.js';
import { MaskedAdam } from '../../src/runtime/tfjs/optimizer.js';
import { BatchGradients, splitRows } from '../../src/distill/parallel.js';
import { Teacher } from '../../src/distill/teacher.js';
import { pruningMasks, trainableInitializers } from '../../src/distill/trainable.js';
import { attentionOutputs, decoderBlocks } from '../../src/model/blocks.js';
import { modelIo } from '../../src/model/io.js';
import { linears } from '../../src/model/linears.js';
import { encodeInline, readOnnx } from '../../src/model/onnx-io.js';
import { magnitude } from '../../src/prune/magnitude.js';
import { OnnxExecutor } from '../../src/runtime/tfjs/executor.js';
import { seededRandom } from '../../src/util/random.js';
import { allClose } from '../helpers.js';

const ROOT = resolve(__dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');

describe('data-parallel distillation gradients', () => {
  it('splits rows as evenly as possible, larger shares first, never an empty share', () => {
    expect(splitRows(4, 2)).toEqual([2, 2]);
    expect(splitRows(4, 3)).toEqual([2, 1, 1]);
    expect(splitRows(1, 2)).toEqual([1]);
  });

  it('with 2 and 3 threads, one step (KL + hidden MSE + attention-output MSE + cross-entropy) gives one thread\'s loss, gradients and Adam update up to float rounding; pruned weights stay exactly 0', async () => {
    const model = readOnnx(MODEL);
    const layers = linears(model).filter((l) => l.name.startsWith('layers.'));
    await magnitude.apply(model, magnitude.params.parse({ sparsity: 0.5 }), { layers, seed: 0, random: seededRandom(1), progress: { layer() {} }, where: 'test' });
    const [B, S] = [4, 32];
    const p = KdParams.parse({ batch_size: B, seq_len: S, loss_weights: { kl: 1, hidden: 0.5, ce: 0.3, attention: 0.5 } });
    const io = modelIo(model);
    const hidden = decoderBlocks(model).slice(0, 2).map(({ index, output }) => ({ index, output }));
    const attention = [...attentionOutputs(model)].slice(1, 3).map(([index, output]) => ({ index, output }));
    const teacher = await Teacher.open(MODEL, { hidden: hidden.map((b) => b.index), attention: attention.map((b) => b.index) });
    const r = seededRandom(7);
    const ids = Int32Array.from({ length: B * S }, () => Math.floor(r() * 512));
    const target = await teacher.run(ids, B, S);
    await teacher.close();
    const names = trainableInitializers(model, layers);
    const exec = await OnnxExecutor.create(model, { trainable: (n) => names.has(n) });
    const tf = exec.tf;
    const masks = pruningMasks(exec, model);
    const start = new Map([...exec.variables].map(([n, v]) => [n, (v.dataSync() as Float32Array).slice()]));
    const setup = () => ({ model: encodeInline(model), path: model.path, trainable: [...names], params: p, io, hidden, attention });
    const loss = (rows: number, i: Int32Array, t: typeof target) => studentLoss(exec, { ...p, batch_size: rows }, io, i, t, hidden, attention);

    /** loss, gradients and the weights after one Adam step from `start` */
    const step = async (threads: number) => {
      for (const [n, v] of exec.variables) v.assign(tf.tensor(start.get(n)!, v.shape));
      const g = BatchGradients.start(exec, loss, threads, setup);
      try {
        const out = await g.compute(ids, B, S, target);
        const grads = new Map(Object.entries(out.grads).map(([n, t]) => [n, (t.dataSync() as Float32Array).slice()]));
        const adam = new MaskedAdam(tf, exec.variables, masks, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, clip: 1, warmup: 0, schedule: 'constant', steps: 1 });
        adam.apply(out.grads as Record<string, tfjs.Tensor>);
        adam.dispose();
        const weights = new Map([...exec.variables].map(([n, v]) => [n, (v.dataSync() as Float32Array).slice()]));
        return { loss: out.loss, grads, weights, threads: g.threads };
      } finally {
        await g.close();
      }
    };
    const one = await step(1);
    expect(masks.size).toBeGreaterThan(0);
    for (const threads of [2, 3]) {
      const par = await step(threads);
      expect(par.threads).toBe(threads);
      expect(Math.abs(par.loss - one.loss) / one.loss).toBeLessThan(1e-6);
      for (const [name, g1] of one.grads) {
        // the shares' sums end in a different order: float32 rounding only
        const c = allClose(par.grads.get(name)!, g1, 1e-3, 1e-7); // measured relative Frobenius ≤ 2.4e-7
        expect(c.ok, `${threads} threads, gradient of ${name}: ${c.worst}`).toBe(true);
        expect(c.relFro, name).toBeLessThan(1e-5);
        // Adam's first step moves a weight by lr·g/(|g| + ε): rounding matters only where |g| is near ε
        const w0 = start.get(name)!;
        const d1 = one.weights.get(name)!.map((x, j) => x - w0[j]!);
        const dp = par.weights.get(name)!.map((x, j) => x - w0[j]!);
        const w = allClose(dp, d1, 0, 0.05 * 1e-3); // 5 % of lr; measured ≤ 0.16 %
        expect(w.ok, `${threads} threads, update of ${name}: ${w.worst}`).toBe(true);
        expect(w.relFro, name).toBeLessThan(1e-3); // measured ≤ 2.1e-5
        const mask = masks.get(name)?.dataSync();
        if (mask) par.weights.get(name)!.forEach((x, j) => mask[j] === 0 && expect(x).toBe(0));
      }
    }
    exec.dispose();
  }, 60_000);
});
