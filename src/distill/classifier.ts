import type * as tfjs from '@tensorflow/tfjs';
import { layoutAdapter } from '../data/layout.js';
import { loadDataset } from '../data/load.js';
import type { DatasetSpec } from '../data/spec.js';
import { UserError } from '../errors.js';
import type { ModelIo } from '../model/io.js';
import { loadModel } from '../model/load.js';
import { modelIo } from '../model/io.js';
import type { Model } from '../model/model.js';
import type { PassContext, PassResult } from '../pass/pass.js';
import { ort, sessionFromFile } from '../runtime/ort.js';
import { OnnxExecutor } from '../runtime/tfjs/executor.js';
import { klLoss, type KlDirection } from './loss.js';
import { MaskedAdam } from '../runtime/tfjs/optimizer.js';
import { layerStats, pruningMasks } from './trainable.js';

/**
 * Distillation of an image (or any float-input) classifier: the student (the compressed model, in
 * pare's tfjs executor) learns the teacher's (the original's, in ONNX Runtime) class distribution on
 * the samples of a dataset, with KL at temperature T between their logits. A model whose outputs are
 * probabilities (non-negative, summing to 1: a Softmax head) is compared on log-probabilities, which
 * are logits up to a constant. Pruned zeros stay
 * zero and fake-quantized weights return to their grid as for language models (kd.ts); a model
 * whose batch axis is fixed at 1 runs its samples one at a time and averages their losses.
 */

export interface ClassifierKdParams {
  steps: number;
  batch_size: number;
  lr: number;
  warmup: number;
  schedule: 'constant' | 'linear' | 'cosine';
  weight_decay: number;
  clip: number;
  temperature: number;
  kl: KlDirection;
  samples: number;
  data: 'teacher' | 'calibration' | DatasetSpec;
}

/** The samples to train on, in the model's input layout: `count` rows of `dims`. */
async function trainingSamples(p: ClassifierKdParams, ctx: PassContext, io: ModelIo): Promise<{ rows: Float32Array[]; dims: number[] }> {
  if (p.data === 'teacher') throw new UserError(`${ctx.where}: distill.kd data: teacher samples token text; a classifier learns from images: set params.data to calibration or a dataset`);
  if (p.data === 'calibration') {
    if (!ctx.calibration) throw new Error(`${ctx.where}: distill.kd data: calibration needs ctx.calibration`);
    const rows: Float32Array[] = [];
    let dims: number[] = [];
    for (const f of ctx.calibration.feeds.slice(0, p.samples)) {
      const t = f[io.inputName];
      if (!t || t.type !== 'float32') throw new UserError(`${ctx.where}: distill.kd: the calibration set does not feed '${io.inputName}' as float32`);
      const per = t.dims.slice(1).reduce((a, b) => a * Number(b), 1);
      for (let k = 0; k < Number(t.dims[0]); k++) rows.push((t.data as Float32Array).slice(k * per, (k + 1) * per));
      dims = t.dims.slice(1).map(Number);
    }
    return { rows: rows.slice(0, p.samples), dims };
  }
  const data = await loadDataset(p.data, ctx.recipeDir ?? '.');
  if (data.kind !== 'tensors') throw new UserError(`${ctx.where}: distill.kd data for a classifier must be images or arrays, got ${data.kind}`);
  const adapt = layoutAdapter(data, io);
  const rows = Array.from({ length: Math.min(p.samples, data.count) }, (_, i) => {
    const row = new Float32Array(adapt.sampleSize);
    adapt.copy(i, row);
    return row;
  });
  return { rows, dims: adapt.dims };
}

export async function distillClassifier(model: Model, p: ClassifierKdParams, ctx: PassContext, teacherPath: string, names: Set<string>): Promise<PassResult> {
  const t0 = performance.now();
  const io = modelIo(model);
  const { rows, dims } = await trainingSamples(p, ctx, io);
  if (rows.length === 0) throw new UserError(`${ctx.where}: distill.kd data has no samples`);
  const teacherModel = loadModel(teacherPath);
  const teacherOutput = modelIo(teacherModel).outputName;
  teacherModel.close();
  const teacher = await sessionFromFile(teacherPath, { threads: 1 });
  const exec = await OnnxExecutor.create(model, { trainable: (n) => names.has(n) });
  const tf = exec.tf;
  const warnings: string[] = [];
  if (exec.fallback) warnings.push(`tfjs backend ${exec.backend}: ${exec.fallback}`);
  const oneAtATime = io.inputDims[0] === 1;
  try {
    // teacher logits for every sample, once
    const outputs: Float32Array[] = [];
    for (const row of rows) {
      const out = await teacher.run({ [io.inputName]: new ort.Tensor('float32', row, [1, ...dims]) });
      outputs.push((out[teacherOutput]!.data as Float32Array).slice());
    }
    // probabilities (a Softmax head, however the graph spells it) are compared as log-probabilities; the student's head is the teacher's
    const probabilities = outputs.every((y) => y.every((v) => v >= 0) && Math.abs(y.reduce((a, b) => a + b, 0) - 1) < 1e-3);
    const targets = probabilities ? outputs.map((y) => y.map((v) => Math.log(Math.max(v, 1e-30)))) : outputs;
    const classes = targets[0]!.length;
    const masks = pruningMasks(exec, model);
    const adam = new MaskedAdam(tf, exec.variables, masks, { lr: p.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: p.weight_decay, clip: p.clip, warmup: p.warmup, schedule: p.schedule, steps: p.steps });
    // a seeded order over the samples, walked batch by batch
    const order = rows.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(ctx.random() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const varByTfName = new Map([...exec.variables].map(([init, v]) => [v.name, init]));
    const varList = [...exec.variables.values()];
    let first = NaN;
    let last = NaN;
    for (let step = 0; step < p.steps; step++) {
      const picked = Array.from({ length: Math.min(p.batch_size, rows.length) }, (_, k) => order[(step * p.batch_size + k) % order.length]!);
      const groups = oneAtATime ? picked.map((i) => [i]) : [picked];
      const { value, grads } = tf.variableGrads(() => {
        let total: tfjs.Scalar = tf.scalar(0);
        for (const g of groups) {
          const input = new Float32Array(g.length * rows[0]!.length);
          g.forEach((i, k) => input.set(rows[i]!, k * rows[0]!.length));
          const feeds = exec.feeds({ [io.inputName]: { type: 'float32', dims: [g.length, ...dims], data: input } });
          let out = tf.reshape(exec.run(feeds, [io.outputName])[io.outputName]!, [g.length, classes]) as tfjs.Tensor2D;
          if (probabilities) out = tf.log(tf.maximum(out, 1e-30)) as tfjs.Tensor2D;
          const target = tf.tensor2d(Float32Array.from(g.flatMap((i) => Array.from(targets[i]!))), [g.length, classes]);
          total = tf.add(total, tf.mul(klLoss(tf, out, target, p.temperature, p.kl), g.length / picked.length));
        }
        return total;
      }, varList);
      const named: Record<string, tfjs.Tensor> = {};
      for (const [tfName, g] of Object.entries(grads)) named[varByTfName.get(tfName)!] = g;
      const { gradNorm, lr } = adam.apply(named);
      last = value.dataSync()[0]!;
      value.dispose();
      if (!Number.isFinite(last)) throw new UserError(`${ctx.where}: distill.kd diverged at step ${step + 1} (loss ${last}); lower params.lr or set params.clip`);
      if (Number.isNaN(first)) first = last;
      ctx.progress.step?.(step, p.steps, `loss ${last.toFixed(4)} · lr ${lr.toExponential(2)} · |g| ${gradNorm.toFixed(3)}`);
    }
    exec.writeBack(model);
    adam.dispose();
    return {
      layers: layerStats(model, names, ctx),
      warnings,
      summary: { steps: p.steps, samples_seen: p.steps * Math.min(p.batch_size, rows.length), training_samples: rows.length, first_loss: first, last_loss: last, wall_s: Math.round((performance.now() - t0) / 100) / 10, backend: exec.backend, trained_tensors: names.size },
    };
  } finally {
    exec.dispose();
    await teacher.release();
  }
}
