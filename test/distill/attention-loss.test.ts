import { join, resolve } from 'node:path';
import type * as tfjs from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/load.js';
import { DatasetSpec } from '../../src/data/spec.js';
import { distillKd, studentLoss } from '../../src/distill/kd.js';
import type { MatchedOutput } from '../../src/distill/parallel.js';
import { attentionOutputs } from '../../src/model/blocks.js';
import { lmFeeds, modelIo } from '../../src/model/io.js';
import { linears } from '../../src/model/linears.js';
import type { Model } from '../../src/model/model.js';
import { readOnnx, writeOnnx } from '../../src/model/onnx-io.js';
import type { PassContext } from '../../src/pass/pass.js';
import { magnitude } from '../../src/prune/magnitude.js';
import { OnnxExecutor } from '../../src/runtime/tfjs/executor.js';
import { seededRandom } from '../../src/util/random.js';
import { tempDir } from '../helpers.js';
import { firstWindows, meanMse, outputsOf } from './reference-outputs.js';
import { storiesTokens } from '../runtime/tfjs/helpers.js';

const ROOT = resolve(__dirname, '../..');
const MODEL = join(ROOT, 'fixtures/stories260K/model.onnx');
const tmp = tempDir('pare-attn-loss-');
afterAll(() => tmp.cleanup());

function context(model: Model, teacher = MODEL): PassContext {
  return {
    layers: linears(model).filter((l) => l.name.startsWith('layers.')),
    seed: 0,
    random: seededRandom(1),
    progress: { layer() {} },
    where: 'passes[1]',
    original: () => teacher,
    recipeDir: ROOT,
  };
}

const TEXT = { kind: 'text', path: 'fixtures/tinystories/valid-head.txt', tokenizer: 'fixtures/stories260K/tok512.bin', select: '1-2' };
/** one step at a negligible learning rate: summary.first_loss is the loss on the first batch of TEXT */
const ONE_STEP = { steps: 1, batch_size: 4, seq_len: 32, samples: 4, data: TEXT, lr: 1e-9, warmup: 0, checkpoint_every: 0, loss_weights: { kl: 0, attention: 1 } };

describe('distill.kd attention-output loss', () => {
  it('finds each block\'s o_proj output, and is zero with a zero gradient when the student is the teacher', async () => {
    const model = readOnnx(MODEL);
    const outputs = attentionOutputs(model);
    expect([...outputs]).toEqual([0, 1, 2, 3, 4].map((i) => [i, `/layers.${i}/self_attn/o_proj/MatMul_output_0`]));
    const matched: MatchedOutput[] = [...outputs].map(([index, output]) => ({ index, output }));
    const trained = new Set(context(model).layers.map((l) => l.weight));
    const exec = await OnnxExecutor.create(model, { trainable: (n) => trained.has(n) });
    const tf = exec.tf;
    try {
      const io = modelIo(model);
      const [B, S] = [2, 16];
      const ids = storiesTokens(B, S);
      const p = { batch_size: B, seq_len: S, temperature: 1, kl: 'forward' as const, loss_weights: { kl: 0, hidden: 0, ce: 0, attention: 1 } };
      const own = tf.tidy(() => exec.run(exec.feeds(lmFeeds(io, ids, B, S)), [io.outputName, ...matched.map((m) => m.output)]));
      const target = {
        logits: own[io.outputName]!.dataSync() as Float32Array,
        hidden: new Map(),
        attention: new Map(matched.map((m) => [m.index, own[m.output]!.dataSync() as Float32Array])),
      };
      for (const t of Object.values(own)) t.dispose();
      const vars = [...exec.variables.values()];
      const lossAndGrads = () => {
        const { value, grads } = tf.variableGrads(() => studentLoss(exec, p, io, ids, target, [], matched), vars);
        const norms = Object.values(grads).map((g) => Math.sqrt((g.square().sum().dataSync() as Float32Array)[0]!));
        const loss = value.dataSync()[0]!;
        tf.dispose([value, ...Object.values(grads)]);
        return { loss, norms };
      };
      const same = lossAndGrads();
      expect(same.loss).toBe(0);
      expect(same.norms.every((n) => n === 0)).toBe(true);

      // the term can fail: one block's o_proj scaled by 1.1 gives a positive loss and a gradient
      const o = exec.variables.get(context(model).layers.find((l) => l.name === 'layers.2.self_attn.o_proj')!.weight)!;
      o.assign(tf.mul(o, 1.1) as tfjs.Variable);
      const moved = lossAndGrads();
      expect(moved.loss).toBeGreaterThan(0);
      expect(Math.max(...moved.norms)).toBeGreaterThan(0);
    } finally {
      exec.dispose();
    }
  });

  it('equals the mean over blocks of the float64 MSE between ONNX Runtime\'s o_proj outputs', async () => {
    const student = readOnnx(MODEL);
    await magnitude.apply(student, magnitude.params.parse({ sparsity: 0.5 }), context(student));
    const data = await loadDataset(DatasetSpec.parse(TEXT), ROOT);
    if (data.kind !== 'tokens') throw new Error('expected tokens');
    // the pass's first batch: the first four 32-token windows of TEXT, in order
    const { feed } = firstWindows(data.sequences);
    const names = [...attentionOutputs(student).values()];
    const mse = meanMse(await outputsOf(student, names, feed), await outputsOf(readOnnx(MODEL), names, feed), names);
    const m = readOnnx(MODEL);
    await magnitude.apply(m, magnitude.params.parse({ sparsity: 0.5 }), context(m));
    const result = await distillKd.apply(m, distillKd.params.parse(ONE_STEP), context(m));
    expect(result.warnings.filter((w) => w.startsWith('loss_weights'))).toEqual([]);
    expect(Math.abs(Number(result.summary!.first_loss) - mse) / mse).toBeLessThan(1e-4); // measured 6.7e-7
  }, 60_000);

  it('warns and skips the term when no block of the teacher has an o_proj output', async () => {
    const teacher = readOnnx(MODEL);
    for (const n of teacher.graph.node ?? []) n.name = n.name?.replace('/o_proj/', '/proj_out/');
    const teacherPath = join(tmp.dir, 'renamed.onnx');
    writeOnnx(teacher, teacherPath);
    const m = readOnnx(MODEL);
    const result = await distillKd.apply(m, distillKd.params.parse({ ...ONE_STEP, loss_weights: { kl: 1, attention: 1 } }), context(m, teacherPath));
    expect(result.warnings.filter((w) => w.startsWith('loss_weights'))).toEqual(['loss_weights.attention is set but no attention output (o_proj) matches between student and teacher blocks; attention-output loss skipped']);
    // the KL of the unchanged student to itself: zero up to float32 rounding, which may fall either side
    expect(Number(result.summary!.first_loss)).toBeGreaterThanOrEqual(-1e-6);
  }, 60_000);
});
