/**
 * src/distill — a pass family (layer 11): knowledge-distillation recovery on the tfjs executor.
 */
import { resolve } from 'node:path';
import { specFiles } from '../data/spec-files.js';
import { UserError } from '../errors.js';
import { attentionOutputs, decoderBlocks } from '../model/blocks.js';
import { modelIo, type ModelIo } from '../model/io.js';
import type { Model } from '../model/model.js';
import { encodeInline } from '../model/onnx-io.js';
import { definePass, type PassContext } from '../pass/pass.js';
import { resolveKvShapes } from '../runtime/kv-shapes.js';
import { OnnxExecutor } from '../runtime/tfjs/executor.js';
import { sha256Bytes } from '../util/hash.js';
import { loadTrainingState, restore, saveTrainingState, snapshot } from './checkpoint.js';
import { distillClassifier } from './classifier.js';
import { TokenWindows } from './data.js';
import { BestState, splitHeldOut } from './early-stop.js';
import { heldOutBatches, heldOutKl } from './held-out.js';
import { KdParams } from './kd-params.js';
import { MaskedAdam } from '../runtime/tfjs/optimizer.js';
import { BatchGradients, defaultThreads, type MatchedOutput } from './parallel.js';
import { studentLoss } from './student-loss.js';
import { Teacher, teacherSpec, type TeacherSpec, type TeacherTargetSource, type TeacherTargets } from './teacher.js';
import { TeacherThread } from './teacher-thread.js';
import { defaultLearningRate, layerStats, pruningMasks, trainableInitializers } from './trainable.js';
import { trainingWindows } from './training-windows.js';

export { KdParams } from './kd-params.js';
export { studentLoss } from './student-loss.js';

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

export const distillKd = definePass({
  id: 'distill.kd',
  summary: 'knowledge-distillation recovery: train the compressed model to match the original (KL at temperature T, optional hidden-state and attention-output MSE and cross-entropy)',
  params: KdParams,
  needsCalibration: (p) => (p?.data === 'calibration' ? { need: 'required', param: 'data', instead: 'data: teacher' } : { need: 'none' }),
  eligible: (layer) => layer.kind === 'matmul' || layer.kind === 'gemm' || layer.kind === 'conv',
  trainsStoredFactors: true,
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
  const { spec, matched } = await describeTeacher(model, p, teacherPath, io, warnings);

  const names = trainableInitializers(model, ctx.layers);
  if (names.size === 0) throw new UserError(`${ctx.where}: distill.kd found nothing to train among the targets`);
  const lr = p.lr ?? defaultLearningRate(model, names);
  // everything opened from here on is closed in the finally below, whichever way the run ends
  let onThisThread: Teacher | undefined;
  let teacher: TeacherTargetSource | undefined;
  let exec: OnnxExecutor | undefined;
  let gradients: BatchGradients | undefined;
  // the teacher's outputs for the next step, issued before this step's student work (in the teacher thread they are computed meanwhile; on this thread onnxruntime-node 1.30 runs the session synchronously, so this only orders the work)
  let prefetched: Promise<TeacherTargets> | undefined;
  try {
    // data: teacher samples its windows on this thread (the pipeline's random stream draws the tokens); it is built before the teacher thread, which takes spec.bytes
    if (p.data === 'teacher' || !p.teacher_thread) onThisThread = await Teacher.fromSpec(spec);
    teacher = p.teacher_thread ? new TeacherThread(spec) : onThisThread!;
    exec = await OnnxExecutor.create(model, { trainable: (n) => names.has(n) });
    const tf = exec.tf;
    if (exec.fallback) warnings.push(`tfjs backend ${exec.backend}: ${exec.fallback}`);
    const student = exec;
    gradients = BatchGradients.start(exec, (rows, ids, target) => studentLoss(student, { ...p, batch_size: rows }, io, ids, target, matched.hidden, matched.attention), p.threads || defaultThreads(p.batch_size), () => ({
      model: encodeInline(model),
      path: model.path,
      trainable: [...names],
      params: p,
      io,
      ...matched,
    }));
    const split = splitHeldOut(await trainingWindows(p, ctx, spec.io, onThisThread?.ortSession, io.outputWidth), p.held_out, ctx.where);
    if (onThisThread !== teacher) {
      // the session sampled the windows; the teacher thread's computes the rest, so the model is not held twice while training
      await onThisThread?.close();
      onThisThread = undefined;
    }
    const windows = new TokenWindows(split.train, p.seq_len, ctx.seed * 7919 + 17);
    const heldOut = await heldOutBatches(split.heldOut, p, teacher);
    const best = new BestState<Map<string, Float32Array>>(p.patience);
    const measure = (step: number) => best.offer(step, heldOutKl(student, p, io, heldOut), () => new Map([...student.variables].map(([n, v]) => [n, (v.dataSync() as Float32Array).slice()])));
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
    const start = statePath && ctx.resume ? resumeFrom(statePath, key, exec, adam, meta, ctx, p.steps) : 0;

    let lastLoss = NaN;
    let recent = NaN;
    let stoppedAt = p.steps;
    if (heldOut.length > 0) measure(start);
    const source = teacher;
    const teach = (step: number) => {
      const run = source.run(windows.batch(step, p.batch_size), p.batch_size, p.seq_len);
      run.catch(() => undefined); // handled where it is awaited; this keeps a failure during the step from counting as unhandled
      return run;
    };
    prefetched = start < p.steps ? teach(start) : undefined;
    for (let step = start; step < p.steps; step++) {
      const ids = windows.batch(step, p.batch_size);
      const target = await prefetched!;
      prefetched = step + 1 < p.steps ? teach(step + 1) : undefined;
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
        ...heldOutSummary(best, split.heldOut.length, stoppedAt),
      },
    };
  } finally {
    await prefetched?.catch(() => undefined); // an early stop or an error leaves one run in flight: it ends before the session closes
    await teacher?.close();
    if (onThisThread !== teacher) await onThisThread?.close();
    await gradients?.close();
    exec?.dispose();
  }
}

/** The teacher's spec (its session's bytes and I/O), with the block outputs the hidden-state and attention-output losses match in student and teacher. */
async function describeTeacher(model: Model, p: KdParams, teacherPath: string, io: ModelIo, warnings: string[]): Promise<{ spec: TeacherSpec; matched: { hidden: MatchedOutput[]; attention: MatchedOutput[] } }> {
  const hiddenBlocks = p.loss_weights.hidden > 0 ? decoderBlocks(model) : [];
  const attentionBlocks = p.loss_weights.attention > 0 ? [...attentionOutputs(model)].map(([index, output]) => ({ index, output })) : [];
  const teacher = await teacherSpec(teacherPath, { hidden: hiddenBlocks.map((b) => b.index), attention: attentionBlocks.map((b) => b.index) });
  if (teacher.io.outputWidth !== undefined && io.outputWidth !== undefined && teacher.io.outputWidth !== io.outputWidth) {
    throw new UserError(`${teacherPath}: the teacher's logits have ${teacher.io.outputWidth} entries, the student's ${io.outputWidth}`);
  }
  const studentHidden = hiddenBlocks.filter((b) => teacher.hidden.has(b.index));
  if (p.loss_weights.hidden > 0 && studentHidden.length === 0) warnings.push('loss_weights.hidden is set but no decoder block matches between student and teacher; hidden-state loss skipped');
  const studentAttention = attentionBlocks.filter((b) => teacher.attention.has(b.index));
  if (p.loss_weights.attention > 0 && studentAttention.length === 0) warnings.push('loss_weights.attention is set but no attention output (o_proj) matches between student and teacher blocks; attention-output loss skipped');

  return { spec: teacher, matched: { hidden: studentHidden.map(({ index, output }) => ({ index, output })), attention: studentAttention } };
}

/** The step a saved training state (matching `key`) lets the run continue from, with the student and optimizer restored; 0 without one. */
function resumeFrom(statePath: string, key: string, exec: OnnxExecutor, adam: MaskedAdam, meta: Record<string, number>, ctx: PassContext, steps: number): number {
  const saved = loadTrainingState(statePath, key);
  if (!saved) return 0;
  restore(exec, adam, saved.arrays);
  Object.assign(meta, saved.meta);
  ctx.progress.step?.(saved.step - 1, steps, `resumed at step ${saved.step}`);
  return saved.step;
}

/** The report fields of early stopping (none without held-out windows). */
function heldOutSummary(best: BestState<unknown>, windows: number, stoppedAt: number): Record<string, number | string> {
  if (!best.best) return {};
  return {
    held_out_windows: windows,
    held_out_kl_first: best.history[0]!.score,
    held_out_kl_best: best.best.score,
    best_step: best.best.step,
    stopped_at_step: stoppedAt,
    held_out_kl: best.history.map((m) => `${m.step}:${m.score.toFixed(4)}`).join(' '),
  };
}
