/**
 * src/distill — a pass family (layer 11): knowledge-distillation recovery on the tfjs executor.
 */
import { resolve } from 'node:path';
import type * as tfjs from '@tensorflow/tfjs';
import { z } from 'zod';
import { loadDataset } from '../data/load.js';
import { DatasetSpec } from '../data/spec.js';
import { specFiles } from '../data/spec-files.js';
import { UserError } from '../errors.js';
import { lmFeeds, modelIo } from '../model/io.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';
import { attentionOutputs, decoderBlocks } from '../model/blocks.js';
import type { Model } from '../model/model.js';
import { definePass, type LayerStat, type PassContext } from '../pass/pass.js';
import { sha256Bytes } from '../util/hash.js';
import { OnnxExecutor } from '../runtime/tfjs/executor.js';
import { loadTrainingState, saveTrainingState } from './checkpoint.js';
import { sampleFromTeacher, sequencesOfFeeds, TokenWindows, windowsOf } from './data.js';
import { BestState, splitHeldOut } from './early-stop.js';
import { crossEntropy, hiddenMse, klLoss } from './loss.js';
import { MaskedAdam } from './optimizer.js';
import { BatchGradients, defaultThreads, type MatchedOutput } from './parallel.js';
import { encodeInline } from '../model/onnx-io.js';
import { Teacher, type TeacherTargets } from './teacher.js';
import { defaultLearningRate, layerStats, pruningMasks, trainableInitializers } from './trainable.js';
import { distillClassifier } from './classifier.js';

/**
 * Knowledge-distillation recovery: the compressed model (student, run by pare's tfjs executor with
 * autodiff) learns to match the original (teacher, run by ONNX Runtime) on token windows (a
 * classifier, on the samples of an image dataset: classifier.ts). Loss:
 * KL at temperature T (forward or reverse), optional MSE between block outputs and between attention
 * outputs (o_proj's), optional cross-entropy on the next token. Constraints hold: pruned weights stay exactly zero (masked
 * Adam), factorized layers train their factors, quantized layers train through fake quantization
 * and are re-quantized onto their grid at the end, shapes never change. With held_out, the best
 * state by KL on held-out windows is what the pass writes (early-stop.ts).
 */

export const KdParams = z.strictObject({
  steps: z.number().int().min(1).default(300).describe('optimizer steps'),
  batch_size: z.number().int().min(1).default(8).describe('token windows per step'),
  seq_len: z.number().int().min(2).default(128).describe('tokens per window'),
  lr: z.number().positive().optional().describe('peak learning rate (Adam); when absent 1e-3 if the trained weights include quantized codes (fake quantization), else 2e-3 (the learning-rate sweep in bench/RESULTS.md)'),
  warmup: z.number().int().min(0).default(20).describe('steps of linear warm-up'),
  schedule: z.enum(['constant', 'linear', 'cosine']).default('cosine').describe('decay after warm-up'),
  weight_decay: z.number().min(0).default(0).describe('decoupled weight decay (AdamW)'),
  clip: z.number().min(0).default(1).describe('global gradient-norm clip; 0 = none'),
  temperature: z.number().positive().default(1).describe('softmax temperature of the KL term'),
  kl: z.enum(['forward', 'reverse']).default('forward').describe('forward KL(teacher‖student) or reverse KL(student‖teacher) (MiniLLM)'),
  loss_weights: z
    .object({
      kl: z.number().min(0).default(1),
      hidden: z.number().min(0).default(0).describe('MSE between student and teacher block outputs'),
      attention: z.number().min(0).default(0).describe("MSE between student and teacher attention outputs (each block's o_proj output)"),
      ce: z.number().min(0).default(0).describe('cross-entropy on the next token of the data'),
    })
    .prefault({}),
  data: z
    .union([z.enum(['teacher', 'calibration']), DatasetSpec])
    .default('teacher')
    .describe('teacher: text sampled from the teacher (data-free); calibration: the recipe calibration set; or a dataset spec (a classifier: calibration or an image dataset)'),
  samples: z.number().int().min(1).default(256).describe('windows sampled from the teacher, or the most windows (a classifier: samples) taken from the data'),
  sample_temperature: z.number().min(0).default(1).describe('temperature of teacher sampling; 0 = greedy'),
  start_token: z.number().int().min(0).optional().describe('first token of every sampled window (e.g. BOS = 1 for Llama tokenizers); random when absent'),
  teacher: z.string().optional().describe('teacher ONNX file (relative to the recipe); the model before the first pass when absent'),
  checkpoint_every: z.number().int().min(0).default(50).describe('save the training state every N steps for --resume; 0 = never'),
  held_out: z.number().int().min(0).default(0).describe('windows held out of the training data for early stopping: KL to the teacher on them every eval_every steps, and the best state is kept; 0 = off'),
  eval_every: z.number().int().min(1).default(50).describe('steps between held-out measurements (with held_out)'),
  patience: z.number().int().min(0).default(0).describe('stop after this many held-out measurements in a row without a new best; 0 = run every step (the best state is still kept)'),
  threads: z.number().int().min(0).default(1).describe('threads sharing each batch (this one plus worker threads, each differentiating a share of the rows; the same result up to float rounding, so 1, the default, gives the same bytes on every machine); 0 = min(2, cores, batch_size)'),
});
export type KdParams = z.output<typeof KdParams>;

export const distillKd = definePass({
  id: 'distill.kd',
  summary: 'knowledge-distillation recovery: train the compressed model to match the original (KL at temperature T, optional hidden-state and attention-output MSE and cross-entropy)',
  params: KdParams,
  needsCalibration: (p) => (p?.data === 'calibration' ? { need: 'required', param: 'data', instead: 'data: teacher' } : { need: 'none' }),
  eligible: (layer) => layer.kind === 'matmul' || layer.kind === 'gemm' || layer.kind === 'conv',
  selectsNBits: true,
  inputFiles: (p) => [
    ...(p.teacher === undefined ? [] : [{ param: 'teacher', path: p.teacher }]),
    ...(typeof p.data === 'object' ? specFiles(p.data).map((f) => ({ param: `data.${f.field}`, path: f.path })) : []),
  ],
  async apply(model, params, ctx) {
    return distill(model, params, ctx);
  },
});

async function distill(model: Model, p: KdParams, ctx: PassContext) {
  const t0 = performance.now();
  const warnings: string[] = [];
  const teacherPath = p.teacher ? resolve(ctx.recipeDir ?? '.', p.teacher) : ctx.original?.();
  if (!teacherPath) throw new UserError(`${ctx.where}: distill.kd needs a teacher: give params.teacher or run it inside \`pare compress\``);
  if (modelIo(model).task !== 'causal-lm') {
    const trained = trainableInitializers(model, ctx.layers);
    if (trained.size === 0) throw new UserError(`${ctx.where}: distill.kd found nothing to train among the targets`);
    return distillClassifier(model, { ...p, lr: p.lr ?? defaultLearningRate(model, trained) }, ctx, teacherPath, trained);
  }
  const io = await resolveKvShapes(model, modelIo(model));

  const hiddenBlocks = p.loss_weights.hidden > 0 ? decoderBlocks(model) : [];
  const attentionBlocks = p.loss_weights.attention > 0 ? [...attentionOutputs(model)].map(([index, output]) => ({ index, output })) : [];
  const teacher = await Teacher.open(teacherPath, { hidden: hiddenBlocks.map((b) => b.index), attention: attentionBlocks.map((b) => b.index) });
  if (teacher.io.outputWidth !== undefined && io.outputWidth !== undefined && teacher.io.outputWidth !== io.outputWidth) {
    throw new UserError(`${teacherPath}: the teacher's logits have ${teacher.io.outputWidth} entries, the student's ${io.outputWidth}`);
  }
  const studentHidden = hiddenBlocks.filter((b) => teacher.hidden.has(b.index));
  if (p.loss_weights.hidden > 0 && studentHidden.length === 0) warnings.push('loss_weights.hidden is set but no decoder block matches between student and teacher; hidden-state loss skipped');
  const studentAttention = attentionBlocks.filter((b) => teacher.attention.has(b.index));
  if (p.loss_weights.attention > 0 && studentAttention.length === 0) warnings.push('loss_weights.attention is set but no attention output (o_proj) matches between student and teacher blocks; attention-output loss skipped');

  const names = trainableInitializers(model, ctx.layers);
  if (names.size === 0) throw new UserError(`${ctx.where}: distill.kd found nothing to train among the targets`);
  const lr = p.lr ?? defaultLearningRate(model, names);
  const exec = await OnnxExecutor.create(model, { trainable: (n) => names.has(n) });
  const tf = exec.tf;
  if (exec.fallback) warnings.push(`tfjs backend ${exec.backend}: ${exec.fallback}`);
  const matched = { hidden: studentHidden.map(({ index, output }) => ({ index, output })), attention: studentAttention };
  const gradients = BatchGradients.start(exec, (rows, ids, target) => studentLoss(exec, { ...p, batch_size: rows }, io, ids, target, matched.hidden, matched.attention), p.threads || defaultThreads(p.batch_size), () => ({
    model: encodeInline(model),
    path: model.path,
    trainable: [...names],
    params: p,
    io,
    ...matched,
  }));
  try {
    const split = splitHeldOut(await trainingWindows(p, ctx, teacher, io.outputWidth), p.held_out, ctx.where);
    const windows = new TokenWindows(split.train, p.seq_len, ctx.seed * 7919 + 17);
    const heldOut = await heldOutBatches(split.heldOut, p, teacher);
    const best = new BestState<Map<string, Float32Array>>(p.patience);
    const measure = (step: number) => best.offer(step, heldOutKl(exec, p, io, heldOut), () => new Map([...exec.variables].map(([n, v]) => [n, (v.dataSync() as Float32Array).slice()])));
    const masks = pruningMasks(exec, model);
    const adam = new MaskedAdam(tf, exec.variables, masks, {
      lr,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: p.weight_decay,
      clip: p.clip,
      warmup: p.warmup,
      schedule: p.schedule,
      steps: p.steps,
    });

    const statePath = ctx.workFile?.('distill.state');
    const key = sha256Bytes(JSON.stringify({ p, names: [...names].sort(), tokens: windows.tokens }));
    const meta = { first_loss: NaN, tokens_seen: 0 };
    let start = 0;
    if (statePath && ctx.resume) {
      const saved = loadTrainingState(statePath, key);
      if (saved) {
        restore(exec, adam, saved.arrays);
        start = saved.step;
        Object.assign(meta, saved.meta);
        ctx.progress.step?.(start - 1, p.steps, `resumed at step ${start}`);
      }
    }

    let lastLoss = NaN;
    let recent = NaN;
    let stoppedAt = p.steps;
    if (heldOut.length > 0) measure(start);
    for (let step = start; step < p.steps; step++) {
      const ids = windows.batch(step, p.batch_size);
      const target = await teacher.run(ids, p.batch_size, p.seq_len);
      const { loss, grads } = await gradients.compute(ids, p.batch_size, p.seq_len, target);
      const { gradNorm, lr } = adam.apply(grads);
      lastLoss = loss;
      if (!Number.isFinite(lastLoss)) throw new UserError(`${ctx.where}: distill.kd diverged at step ${step + 1} (loss ${lastLoss}); lower params.lr or set params.clip`);
      if (Number.isNaN(meta.first_loss)) meta.first_loss = lastLoss;
      recent = Number.isNaN(recent) ? lastLoss : 0.9 * recent + 0.1 * lastLoss;
      meta.tokens_seen += p.batch_size * p.seq_len;
      ctx.progress.step?.(step, p.steps, `loss ${recent.toFixed(4)} · lr ${lr.toExponential(2)} · |g| ${gradNorm.toFixed(3)}`);
      const done = step + 1;
      if (statePath && p.checkpoint_every > 0 && (done % p.checkpoint_every === 0 || done === p.steps)) {
        saveTrainingState(statePath, { key, step: done, arrays: snapshot(exec, adam), meta });
        await ctx.hooks?.afterTrainingStep?.(done);
      }
      if (heldOut.length > 0 && (done % p.eval_every === 0 || done === p.steps) && measure(done)) {
        stoppedAt = done;
        break;
      }
    }
    // keep the best held-out state
    const bestState = best.bestIfNotLast();
    if (bestState) for (const [name, v] of exec.variables) v.assign(tf.tensor(bestState.get(name)!, v.shape));
    exec.writeBack(model);
    adam.dispose();
    const wall = (performance.now() - t0) / 1000;
    return {
      layers: layerStats(model, names, ctx),
      warnings,
      summary: {
        steps: p.steps,
        lr,
        resumed_at_step: start,
        tokens_seen: meta.tokens_seen,
        training_windows: windows.rows.length,
        first_loss: meta.first_loss,
        last_loss: lastLoss,
        smoothed_last_loss: recent,
        wall_s: Math.round(wall * 10) / 10,
        backend: exec.backend,
        threads: gradients.threads,
        trained_tensors: names.size,
        trained_params: [...exec.variables.values()].reduce((s, v) => s + v.size, 0),
        ...(best.best && {
          held_out_windows: split.heldOut.length,
          held_out_kl_first: best.history[0]!.score,
          held_out_kl_best: best.best.score,
          best_step: best.best.step,
          stopped_at_step: stoppedAt,
          held_out_kl: best.history.map((m) => `${m.step}:${m.score.toFixed(4)}`).join(' '),
        }),
      },
    };
  } finally {
    await gradients.close();
    exec.dispose();
    await teacher.close();
  }
}

/** The training loss of one batch (kd.ts's terms, weighted by params.loss_weights; also run by the data-parallel workers: parallel.ts). */
export function studentLoss(
  exec: OnnxExecutor,
  p: Pick<KdParams, 'batch_size' | 'seq_len' | 'temperature' | 'kl' | 'loss_weights'>,
  io: ReturnType<typeof modelIo>,
  ids: Int32Array,
  target: TeacherTargets,
  hidden: readonly MatchedOutput[],
  attention: readonly MatchedOutput[] = [],
): tfjs.Scalar {
  const tf = exec.tf;
  const { batch_size: B, seq_len: S } = p;
  const feeds = exec.feeds(lmFeeds(io, ids, B, S));
  const input = feeds[io.inputName]!;
  const out = exec.run(feeds, [io.outputName, ...hidden.map((b) => b.output), ...attention.map((b) => b.output)]);
  const logits3 = out[io.outputName]!;
  const V = logits3.shape.at(-1)!;
  const student = tf.reshape(logits3, [B * S, V]) as tfjs.Tensor2D;
  const teacherLogits = tf.tensor2d(target.logits, [B * S, V]);
  let loss = tf.mul(klLoss(tf, student, teacherLogits, p.temperature, p.kl), p.loss_weights.kl) as tfjs.Scalar;
  if (p.loss_weights.ce > 0) {
    const next = tf.reshape(tf.slice(logits3, [0, 0, 0], [B, S - 1, V]), [B * (S - 1), V]) as tfjs.Tensor2D;
    const labels = tf.reshape(tf.slice(input, [0, 1], [B, S - 1]), [B * (S - 1)]) as tfjs.Tensor1D;
    loss = tf.add(loss, tf.mul(crossEntropy(tf, next, labels), p.loss_weights.ce));
  }
  const mse = (matched: readonly MatchedOutput[], targets: Map<number, Float32Array>, weight: number) => {
    for (const b of matched) {
      const s = out[b.output]!;
      loss = tf.add(loss, tf.mul(hiddenMse(tf, s, tf.tensor(targets.get(b.index)!, s.shape)), weight / matched.length));
    }
  };
  mse(hidden, target.hidden, p.loss_weights.hidden);
  mse(attention, target.attention, p.loss_weights.attention);
  return loss;
}

/** The windows to train on (and to hold out from), in a fixed order. */
async function trainingWindows(p: KdParams, ctx: PassContext, teacher: Teacher, vocab: number | undefined): Promise<Int32Array[]> {
  if (p.data === 'teacher') {
    if (!vocab) throw new UserError(`${ctx.where}: distill.kd data: teacher needs the logits width of the model's output`);
    ctx.progress.step?.(0, p.steps, `sampling ${p.samples} windows of ${p.seq_len} tokens from the teacher`);
    const rows = await sampleFromTeacher(teacher.ortSession, teacher.io, {
      rows: p.samples,
      seqLen: p.seq_len,
      vocab,
      startToken: p.start_token,
      temperature: p.sample_temperature,
      random: ctx.random,
    });
    return rows;
  }
  let sequences: Int32Array[];
  if (p.data === 'calibration') {
    // needsCalibration makes recipes give calibration for this; direct callers must pass it
    if (!ctx.calibration) throw new Error(`${ctx.where}: distill.kd data: calibration needs ctx.calibration`);
    sequences = sequencesOfFeeds(ctx.calibration.feeds, teacher.io.inputName, ctx.where);
  } else {
    const data = await loadDataset(p.data, ctx.recipeDir ?? '.');
    if (data.kind !== 'tokens') throw new UserError(`${ctx.where}: distill.kd data must be text or token ids, got ${data.kind}`);
    sequences = data.sequences;
  }
  const rows = windowsOf(sequences, p.seq_len).slice(0, p.samples);
  if (rows.length === 0) throw new UserError(`${ctx.where}: distill.kd data has no sequence of ${p.seq_len} tokens; lower params.seq_len`);
  return rows;
}

interface HeldOutBatch {
  ids: Int32Array;
  rows: number;
  teacher: Float32Array;
}

/** Held-out windows in batches of up to batch_size rows, with the teacher's logits (fixed, so computed once). */
async function heldOutBatches(rows: readonly Int32Array[], p: KdParams, teacher: Teacher): Promise<HeldOutBatch[]> {
  const out: HeldOutBatch[] = [];
  for (let i = 0; i < rows.length; i += p.batch_size) {
    const part = rows.slice(i, i + p.batch_size);
    const ids = new Int32Array(part.length * p.seq_len);
    part.forEach((r, b) => ids.set(r, b * p.seq_len));
    out.push({ ids, rows: part.length, teacher: (await teacher.run(ids, part.length, p.seq_len)).logits });
  }
  return out;
}

/** Mean forward KL(teacher ‖ student) per token at T = 1 on the held-out windows. */
function heldOutKl(exec: OnnxExecutor, p: KdParams, io: ReturnType<typeof modelIo>, batches: readonly HeldOutBatch[]): number {
  const tf = exec.tf;
  let total = 0;
  let tokens = 0;
  for (const b of batches) {
    const kl = tf.tidy(() => {
      const out = exec.run(exec.feeds(lmFeeds(io, b.ids, b.rows, p.seq_len)), [io.outputName]);
      const logits = out[io.outputName]!;
      const V = logits.shape.at(-1)!;
      return klLoss(tf, tf.reshape(logits, [b.rows * p.seq_len, V]) as tfjs.Tensor2D, tf.tensor2d(b.teacher, [b.rows * p.seq_len, V]), 1, 'forward');
    });
    total += kl.dataSync()[0]! * b.rows * p.seq_len;
    tokens += b.rows * p.seq_len;
    kl.dispose();
  }
  return total / tokens;
}

function snapshot(exec: OnnxExecutor, adam: MaskedAdam): Record<string, Float32Array> {
  const arrays: Record<string, Float32Array> = {};
  for (const [name, v] of exec.variables) arrays[`var:${name}`] = v.dataSync() as Float32Array;
  const s = adam.state();
  for (const [name, a] of Object.entries(s.m)) arrays[`m:${name}`] = a;
  for (const [name, a] of Object.entries(s.v)) arrays[`v:${name}`] = a;
  arrays['adam:step'] = Float32Array.of(s.step);
  return arrays;
}

function restore(exec: OnnxExecutor, adam: MaskedAdam, arrays: Record<string, Float32Array>): void {
  const m: Record<string, Float32Array> = {};
  const v: Record<string, Float32Array> = {};
  for (const [name, variable] of exec.variables) {
    const saved = arrays[`var:${name}`];
    if (!saved || saved.length !== variable.size) throw new Error(`training state has no value for '${name}'`);
    variable.assign(exec.tf.tensor(saved, variable.shape));
    m[name] = arrays[`m:${name}`]!;
    v[name] = arrays[`v:${name}`]!;
  }
  adam.restore({ step: arrays['adam:step']![0]!, m, v });
}
